// safetensors reading and writing. The JSON header is handled with nlohmann::json, which stays private to
// this file.
#include "loom/nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

namespace loom {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; Loom copies them verbatim");

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "F32";
    case DType::Float64:
      return "F64";
    case DType::Int64:
      return "I64";
    case DType::Int32:
      return "I32";
    case DType::Bool:
      return "BOOL";
  }
  return "?";
}

bool parse_dtype(const std::string& name, DType* dtype) {
  static const std::map<std::string, DType> kNames = {{"F32", DType::Float32},
                                                      {"F64", DType::Float64},
                                                      {"I64", DType::Int64},
                                                      {"I32", DType::Int32},
                                                      {"BOOL", DType::Bool}};
  auto it = kNames.find(name);
  if (it == kNames.end()) return false;
  *dtype = it->second;
  return true;
}

// Reads the header of one safetensors file and then each tensor's bytes straight into its storage.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  SafetensorsContents read() {
    std::error_code ec;
    LOOM_CHECK(std::filesystem::exists(path_, ec), prefix(), "no such file");
    LOOM_CHECK(std::filesystem::is_regular_file(path_, ec), prefix(), "not a regular file");
    file_size_ = std::filesystem::file_size(path_, ec);
    LOOM_CHECK(!ec, prefix(), "cannot read its size: ", ec.message());
    in_.open(path_, std::ios::binary);
    LOOM_CHECK(in_.is_open(), prefix(), "cannot open the file for reading");
    LOOM_CHECK(file_size_ >= 8, prefix(), "file has ", file_size_,
               " bytes, fewer than the 8-byte header length that starts every safetensors file");

    unsigned char length_bytes[8];
    read_bytes(length_bytes, 8, 0);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | length_bytes[i];
    LOOM_CHECK(header_len <= file_size_ - 8, prefix(), "header length ", header_len,
               " runs past the end of the ", file_size_, "-byte file");
    std::string header(header_len, '\0');
    read_bytes(header.data(), header_len, 8);
    data_start_ = 8 + header_len;
    data_size_ = file_size_ - data_start_;

    nlohmann::json json;
    try {
      json = nlohmann::json::parse(header);
    } catch (const nlohmann::json::parse_error& e) {
      LOOM_FAIL(prefix(), "header is not valid JSON: ", e.what());
    }
    LOOM_CHECK(json.is_object(), prefix(), "header must be a JSON object, got ", json.type_name());

    SafetensorsContents contents;
    std::vector<Entry> entries;
    for (const auto& [name, value] : json.items()) {
      if (name == "__metadata__") {
        contents.metadata = parse_metadata(value);
      } else {
        entries.push_back(parse_entry(name, value));
      }
    }
    check_layout(entries);
    for (const Entry& e : entries) contents.tensors.emplace(e.name, load(e));
    return contents;
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin;
    uint64_t end;
  };

  std::string prefix() const { return "load_safetensors: " + path_ + ": "; }

  void read_bytes(void* dst, uint64_t n, uint64_t at) {
    in_.seekg(static_cast<std::streamoff>(at));
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    LOOM_CHECK(in_.good(), prefix(), "reading ", n, " bytes at offset ", at, " failed");
  }

  std::map<std::string, std::string> parse_metadata(const nlohmann::json& value) const {
    LOOM_CHECK(value.is_object(), prefix(), "__metadata__ must be an object of strings, got ",
               value.type_name());
    std::map<std::string, std::string> metadata;
    for (const auto& [key, v] : value.items()) {
      LOOM_CHECK(v.is_string(), prefix(), "__metadata__ entry '", key, "' must be a string, got ",
                 v.type_name());
      metadata[key] = v.get<std::string>();
    }
    return metadata;
  }

  Entry parse_entry(const std::string& name, const nlohmann::json& value) const {
    std::string where = prefix() + "tensor '" + name + "': ";
    LOOM_CHECK(value.is_object(), where, "expected an object with dtype, shape and data_offsets");
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      LOOM_CHECK(value.contains(field), where, "missing field '", field, "'");
    }
    Entry e;
    e.name = name;
    const nlohmann::json& dtype = value["dtype"];
    LOOM_CHECK(dtype.is_string(), where, "dtype must be a string");
    LOOM_CHECK(parse_dtype(dtype.get<std::string>(), &e.dtype), where, "unsupported dtype '",
               dtype.get<std::string>(), "' (Loom reads F32, F64, I64, I32 and BOOL)");

    const nlohmann::json& shape = value["shape"];
    LOOM_CHECK(shape.is_array(), where, "shape must be an array");
    LOOM_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), where, "shape has ", shape.size(),
               " dims; Loom supports at most ", kMaxDims);
    // The byte count is bounded by the data size, so a product beyond it is rejected before it can overflow.
    bool has_zero = false;
    for (const nlohmann::json& d : shape) {
      LOOM_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX), where,
                 "shape entries must be non-negative 64-bit integers, got ", d.dump());
      e.shape.push_back(d.get<int64_t>());
      has_zero = has_zero || d.get<uint64_t>() == 0;
    }
    uint64_t numel = has_zero ? 0 : 1;
    bool too_big = false;
    for (int64_t extent : e.shape) {
      if (has_zero || too_big) break;
      if (numel > data_size_ / static_cast<uint64_t>(extent)) too_big = true;
      numel *= static_cast<uint64_t>(extent);
    }

    const nlohmann::json& offsets = value["data_offsets"];
    LOOM_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                   offsets[1].is_number_unsigned(),
               where, "data_offsets must be two non-negative integers [begin, end], got ", offsets.dump());
    e.begin = offsets[0].get<uint64_t>();
    e.end = offsets[1].get<uint64_t>();
    LOOM_CHECK(e.begin <= e.end, where, "data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    LOOM_CHECK(e.end <= data_size_, where, "data_offsets [", e.begin, ", ", e.end, "] run past the ",
               data_size_, "-byte data buffer");
    uint64_t itemsize = element_size(e.dtype);
    LOOM_CHECK(!too_big && numel * itemsize == e.end - e.begin, where, "shape ", shape_str(e.shape), " of ",
               dtype.get<std::string>(), " needs ",
               too_big ? "more than " + std::to_string(data_size_) : std::to_string(numel * itemsize),
               " bytes but data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin);
    return e;
  }

  // The tensors must tile the data buffer exactly: no overlaps, no gaps, nothing after the last one.
  void check_layout(std::vector<Entry>& entries) const {
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
    });
    uint64_t cursor = 0;
    const Entry* previous = nullptr;
    for (const Entry& e : entries) {
      LOOM_CHECK(e.begin >= cursor, prefix(), "tensors '", previous ? previous->name : "", "' and '", e.name,
                 "' overlap (bytes [", e.begin, ", ", cursor, ") are claimed twice)");
      LOOM_CHECK(e.begin == cursor, prefix(), "bytes [", cursor, ", ", e.begin,
                 ") of the data buffer belong to no tensor (gap before '", e.name, "')");
      cursor = e.end;
      previous = &e;
    }
    LOOM_CHECK(cursor == data_size_, prefix(), data_size_ - cursor,
               " trailing bytes after the last tensor (the data buffer has ", data_size_,
               " bytes, the tensors cover ", cursor, ")");
  }

  Tensor load(const Entry& e) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) read_bytes(t.data_ptr(), e.end - e.begin, data_start_ + e.begin);
    if (e.dtype == DType::Bool) {
      // Any byte but 0 or 1 would be an invalid C++ bool.
      const unsigned char* bytes = static_cast<const unsigned char*>(t.data_ptr());
      for (int64_t i = 0; i < t.numel(); ++i) {
        LOOM_CHECK(bytes[i] <= 1, prefix(), "BOOL tensor '", e.name, "' holds byte ", int(bytes[i]),
                   " at element ", i, " (expected 0 or 1)");
      }
    }
    return t;
  }

  std::string path_;
  std::ifstream in_;
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;
  uint64_t data_size_ = 0;
};

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string prefix = "save_safetensors: " + path + ": ";
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    LOOM_CHECK(!name.empty() && name != "__metadata__", prefix, "invalid tensor name '", name, "'");
    LOOM_CHECK(seen.insert(name).second, prefix, "tensor name '", name, "' appears twice");
    LOOM_CHECK(tensor.defined(), prefix, "tensor '", name, "' is undefined");
    Tensor h = tensor.to(Device()).contiguous();
    uint64_t nbytes = h.nbytes();
    header[name] = {{"dtype", safetensors_dtype(h.dtype())},
                    {"shape", h.shape().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(std::move(h));
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8,
              ' ');  // keeps the data buffer 8-byte aligned, as the reference writer does

  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LOOM_CHECK(out.is_open(), prefix, "cannot open ", tmp, " for writing");
    unsigned char length_bytes[8];
    uint64_t len = json.size();
    for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
    out.write(reinterpret_cast<const char*>(length_bytes), 8);
    out.write(json.data(), static_cast<std::streamsize>(json.size()));
    for (const Tensor& h : host) {
      if (h.nbytes() > 0)
        out.write(static_cast<const char*>(h.data_ptr()), static_cast<std::streamsize>(h.nbytes()));
    }
    out.flush();
    if (!out.good()) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      LOOM_FAIL(prefix, "writing ", tmp, " failed (disk full or not writable?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    LOOM_FAIL(prefix, "cannot rename ", tmp, " to ", path, ": ", ec.message());
  }
}

SafetensorsContents load_safetensors_with_metadata(const std::string& path) { return Reader(path).read(); }

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  return load_safetensors_with_metadata(path).tensors;
}

}  // namespace loom
