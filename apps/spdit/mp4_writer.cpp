#include "mp4_writer.h"

#include <memory>
#include <stdexcept>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

namespace spdit::cli {
namespace {

std::string av_text(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

// FFmpeg's objects, freed however the function leaves.
struct FormatContext {
  AVFormatContext* ctx = nullptr;
  ~FormatContext() {
    if (!ctx) return;
    if (ctx->pb && !(ctx->oformat->flags & AVFMT_NOFILE)) avio_closep(&ctx->pb);
    avformat_free_context(ctx);
  }
};
struct CodecContext {
  AVCodecContext* ctx = nullptr;
  ~CodecContext() { avcodec_free_context(&ctx); }
};
struct Frame {
  AVFrame* f = av_frame_alloc();
  ~Frame() { av_frame_free(&f); }
};
struct Packet {
  AVPacket* p = av_packet_alloc();
  ~Packet() { av_packet_free(&p); }
};
struct Scaler {
  SwsContext* s = nullptr;
  ~Scaler() { sws_freeContext(s); }
};

}  // namespace

void write_mp4(const std::string& path, const at::Tensor& frames_in, int fps) {
  if (frames_in.dim() != 4 || frames_in.size(3) != 3 || frames_in.scalar_type() != at::kByte) {
    throw std::invalid_argument("spdit: write_mp4 takes frames (F, H, W, 3) uint8; " +
                                std::string(c10::str(frames_in.sizes())) + " given");
  }
  const auto frames = frames_in.contiguous();
  const int n = static_cast<int>(frames.size(0)), h = static_cast<int>(frames.size(1)),
            w = static_cast<int>(frames.size(2));
  if (h % 2 || w % 2) {
    throw std::invalid_argument("spdit: an H.264 video (4:2:0) needs an even height and width; " +
                                std::to_string(h) + "x" + std::to_string(w) + " given");
  }
  if (fps < 1) throw std::invalid_argument("spdit: --fps must be at least 1");
  auto fail = [&](const std::string& what, int code) {
    throw std::runtime_error("spdit: cannot write the video '" + path + "': " + what +
                             (code ? ": " + av_text(code) : std::string()));
  };
  av_log_set_level(AV_LOG_ERROR);  // libx264's statistics are noise on a run's output
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
  if (!codec) fail("this FFmpeg has no H.264 encoder (Debian's libavcodec has libx264)", 0);

  FormatContext fmt;
  int rc = avformat_alloc_output_context2(&fmt.ctx, nullptr, "mp4", path.c_str());
  if (rc < 0 || !fmt.ctx) fail("no MP4 muxer", rc);
  AVStream* stream = avformat_new_stream(fmt.ctx, nullptr);
  if (!stream) fail("no stream", 0);

  CodecContext enc;
  enc.ctx = avcodec_alloc_context3(codec);
  enc.ctx->width = w;
  enc.ctx->height = h;
  enc.ctx->pix_fmt = AV_PIX_FMT_YUV420P;
  enc.ctx->time_base = AVRational{1, fps};
  enc.ctx->framerate = AVRational{fps, 1};
  enc.ctx->gop_size = 16;
  enc.ctx->thread_count = 1;  // the ranks' cores are the job's; a short clip needs no more
  if (fmt.ctx->oformat->flags & AVFMT_GLOBALHEADER) enc.ctx->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  av_opt_set(enc.ctx->priv_data, "preset", "medium", 0);
  av_opt_set(enc.ctx->priv_data, "crf", "18",
             0);  // visually lossless for a model's output
  if ((rc = avcodec_open2(enc.ctx, codec, nullptr)) < 0) fail("cannot open the H.264 encoder", rc);
  if ((rc = avcodec_parameters_from_context(stream->codecpar, enc.ctx)) < 0)
    fail("codec parameters", rc);
  stream->time_base = enc.ctx->time_base;
  if ((rc = avio_open(&fmt.ctx->pb, path.c_str(), AVIO_FLAG_WRITE)) < 0)
    fail("cannot open the file", rc);
  if ((rc = avformat_write_header(fmt.ctx, nullptr)) < 0) fail("cannot write the MP4 header", rc);

  Frame yuv;
  yuv.f->format = AV_PIX_FMT_YUV420P;
  yuv.f->width = w;
  yuv.f->height = h;
  if ((rc = av_frame_get_buffer(yuv.f, 0)) < 0) fail("no frame buffer", rc);
  Scaler rgb_to_yuv;
  rgb_to_yuv.s = sws_getContext(w, h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P, SWS_BICUBIC,
                                nullptr, nullptr, nullptr);
  if (!rgb_to_yuv.s) fail("no RGB to YUV converter", 0);
  Packet pkt;
  auto drain = [&](AVFrame* frame) {
    if ((rc = avcodec_send_frame(enc.ctx, frame)) < 0) fail("the encoder refused a frame", rc);
    while ((rc = avcodec_receive_packet(enc.ctx, pkt.p)) >= 0) {
      // Each frame lasts one tick; without it the MP4's edit list drops the
      // last frame.
      if (pkt.p->duration == 0) pkt.p->duration = 1;
      av_packet_rescale_ts(pkt.p, enc.ctx->time_base, stream->time_base);
      pkt.p->stream_index = stream->index;
      if ((rc = av_interleaved_write_frame(fmt.ctx, pkt.p)) < 0) fail("cannot write a packet", rc);
    }
    if (rc != AVERROR(EAGAIN) && rc != AVERROR_EOF) fail("encoding", rc);
  };
  const auto* data = frames.data_ptr<uint8_t>();
  for (int i = 0; i < n; ++i) {
    if ((rc = av_frame_make_writable(yuv.f)) < 0) fail("frame not writable", rc);
    const uint8_t* src[1] = {data + static_cast<size_t>(i) * h * w * 3};
    const int stride[1] = {3 * w};
    sws_scale(rgb_to_yuv.s, src, stride, 0, h, yuv.f->data, yuv.f->linesize);
    yuv.f->pts = i;
    drain(yuv.f);
  }
  drain(nullptr);  // flush the encoder's delayed frames
  if ((rc = av_write_trailer(fmt.ctx)) < 0) fail("cannot finish the MP4", rc);
}

}  // namespace spdit::cli
