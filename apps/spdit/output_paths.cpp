#include "output_paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace spdit::cli {

void check_can_write(const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  struct stat st {};
  const bool existed = stat(path.c_str(), &st) == 0;
  if (existed && S_ISDIR(st.st_mode)) {
    throw std::invalid_argument(flag + " '" + path + "' is a directory; give a file name");
  }
  // Opening is the only honest test (permissions, read-only file systems,
  // root); O_NONBLOCK so that a FIFO without a reader fails instead of waiting.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) hint = " (its directory does not exist: create it first)";
    if (err == ENOTDIR) hint = " (a part of its directory is not a directory)";
    if (err == EACCES || err == EROFS) hint = " (choose a place you may write)";
    throw std::invalid_argument("cannot write " + flag + " '" + path + "': " + std::strerror(err) +
                                hint);
  }
  close(fd);
  if (!existed) unlink(path.c_str());
}

}  // namespace spdit::cli
