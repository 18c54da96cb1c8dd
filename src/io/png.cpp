#include "cnnviz/io/png.h"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>

#include <cstring>

#include "cnnviz/core/error.h"
#include "cnnviz/io/files.h"

namespace cnnviz {

namespace {

// Rows are filtered into a buffer of about this size and compressed as the
// stream goes, so memory stays small for any image size.
constexpr size_t kChunkBytes = 256 * 1024;
// An IDAT chunk's length field allows 2^31 - 1 bytes; split well below it.
constexpr size_t kMaxIdat = size_t{1} << 30;

void put32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v >> 24));
  out.push_back(static_cast<uint8_t>(v >> 16));
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

// length, type, data, CRC-32 of type and data (ISA-L's gzip CRC is PNG's).
void chunk(std::vector<uint8_t>& out, const char type[4], const uint8_t* data, size_t size) {
  put32(out, static_cast<uint32_t>(size));
  const size_t at = out.size();
  out.insert(out.end(), type, type + 4);
  if (size > 0) out.insert(out.end(), data, data + size);
  put32(out, crc32_gzip_refl(0, out.data() + at, 4 + size));
}

// Per thread, so that concurrent writers share nothing and a thread's
// buffers are reused from one image to the next.
struct Encoder {
  std::vector<uint8_t> level_buf = std::vector<uint8_t>(ISAL_DEF_LVL1_DEFAULT);
  std::vector<uint8_t> rows, chunk;
  isal_zstream stream{};

  // Feeds rows[0, size) to the deflate stream, appending its output to `out`.
  void deflate(std::vector<uint8_t>& out, size_t size, bool last) {
    stream.next_in = rows.data();
    stream.avail_in = static_cast<uint32_t>(size);
    stream.end_of_stream = last ? 1 : 0;
    do {
      stream.next_out = chunk.data();
      stream.avail_out = static_cast<uint32_t>(chunk.size());
      if (isal_deflate(&stream) != COMP_OK) {
        throw Error(ErrorCode::kRuntime, "png: the deflate stream failed");
      }
      out.insert(out.end(), chunk.data(), stream.next_out);
    } while (stream.avail_in > 0 || stream.avail_out == 0 ||
             (last && stream.internal_state.state != ZSTATE_END));
  }
};

}  // namespace

void encode_png(const cv::Mat& image, PixelOrder order, std::vector<uint8_t>& png) {
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3) || image.empty() ||
      image.dims != 2) {
    throw Error(ErrorCode::kRuntime, "png: only 8-bit grey or 3-channel images are written");
  }
  thread_local Encoder enc;
  const int channels = image.channels();
  const size_t stride = static_cast<size_t>(image.cols) * channels;
  const size_t line = stride + 1;  // the filter-type byte, then the filtered row
  const size_t rows_per_chunk = std::max<size_t>(1, kChunkBytes / line);
  enc.rows.resize(rows_per_chunk * line);
  enc.chunk.resize(kChunkBytes);
  isal_deflate_init(&enc.stream);
  enc.stream.level = 1;
  enc.stream.level_buf = enc.level_buf.data();
  enc.stream.level_buf_size = static_cast<uint32_t>(enc.level_buf.size());
  enc.stream.gzip_flag = IGZIP_ZLIB;

  // Signature and header, then the compressed rows straight after an IDAT
  // chunk's length and type; split into chunks of kMaxIdat at the end.
  png.assign({0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'});
  std::vector<uint8_t> header;
  put32(header, static_cast<uint32_t>(image.cols));
  put32(header, static_cast<uint32_t>(image.rows));
  header.insert(header.end(), {8, static_cast<uint8_t>(channels == 3 ? 2 : 0), 0, 0, 0});
  chunk(png, "IHDR", header.data(), header.size());
  const size_t idat_at = png.size();
  png.insert(png.end(), {0, 0, 0, 0, 'I', 'D', 'A', 'T'});

  // RGB rows of BGR images go through this buffer first.
  std::vector<uint8_t> swapped(order == PixelOrder::kBgr && channels == 3 ? 2 * stride : 0);
  const uint8_t* previous = nullptr;
  size_t filled = 0;
  for (int y = 0; y < image.rows; ++y) {
    const uint8_t* row = image.ptr<uint8_t>(y);
    if (!swapped.empty()) {
      uint8_t* dst = swapped.data() + (y % 2) * stride;
      for (size_t x = 0; x < stride; x += 3) {
        dst[x] = row[x + 2];
        dst[x + 1] = row[x + 1];
        dst[x + 2] = row[x];
      }
      row = dst;
    }
    // PNG's Up filter: each byte minus the one above (the first row: minus 0).
    uint8_t* out = enc.rows.data() + filled * line;
    out[0] = 2;
    if (previous) {
      for (size_t x = 0; x < stride; ++x) out[1 + x] = static_cast<uint8_t>(row[x] - previous[x]);
    } else {
      std::memcpy(out + 1, row, stride);
    }
    previous = row;
    if (++filled == rows_per_chunk && y + 1 < image.rows) {
      enc.deflate(png, filled * line, false);
      filled = 0;
    }
  }
  enc.deflate(png, filled * line, true);

  const size_t data = png.size() - idat_at - 8;
  if (data <= kMaxIdat) {
    png[idat_at] = static_cast<uint8_t>(data >> 24);
    png[idat_at + 1] = static_cast<uint8_t>(data >> 16);
    png[idat_at + 2] = static_cast<uint8_t>(data >> 8);
    png[idat_at + 3] = static_cast<uint8_t>(data);
    put32(png, crc32_gzip_refl(0, png.data() + idat_at + 4, 4 + data));
  } else {
    // Larger than one chunk may be: rebuild the tail as several IDATs.
    const std::vector<uint8_t> stream(png.begin() + static_cast<std::ptrdiff_t>(idat_at + 8),
                                      png.end());
    png.resize(idat_at);
    for (size_t at = 0; at < stream.size(); at += kMaxIdat) {
      chunk(png, "IDAT", stream.data() + at, std::min(kMaxIdat, stream.size() - at));
    }
  }
  chunk(png, "IEND", nullptr, 0);
}

std::vector<uint8_t> encode_png(const cv::Mat& image, PixelOrder order) {
  std::vector<uint8_t> png;
  encode_png(image, order, png);
  return png;
}

void write_png(const std::string& path, const cv::Mat& image, PixelOrder order) {
  // Reused by the thread's next file: no fresh pages for every image.
  thread_local std::vector<uint8_t> bytes;
  encode_png(image, order, bytes);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace cnnviz
