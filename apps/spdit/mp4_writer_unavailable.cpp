// write_mp4 of a build configured with -DSPDIT_WITH_FFMPEG=OFF (a machine
// without FFmpeg's development files, e.g. a CUDA image): video commands
// still run and say how to get frames out instead.
#include <stdexcept>

#include "mp4_writer.h"

namespace spdit::cli {

void write_mp4(const std::string& path, const at::Tensor&, int) {
  throw std::runtime_error("spdit: cannot write " + path +
                           ": this spdit was built without FFmpeg (-DSPDIT_WITH_FFMPEG=OFF); "
                           "write PNG frames with --frames-out DIR, or rebuild with FFmpeg's "
                           "libraries (Debian: libavcodec-dev libavformat-dev libswscale-dev)");
}

}  // namespace spdit::cli
