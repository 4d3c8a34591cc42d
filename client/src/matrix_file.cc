#include "matrix_file.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

namespace xbar::client {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

template <class T>
double load_as(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return static_cast<double>(v);
}

struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<long> shape;
  size_t data_at = 0;
};

std::expected<NpyHeader, std::string> npy_header(const std::string& bytes,
                                                 const std::string& path) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return std::unexpected(path + ": not a NumPy .npy file (no \\x93NUMPY magic)");
  }
  const auto major = static_cast<uint8_t>(bytes[6]);
  size_t len = 0, at = 0;
  if (major == 1) {
    len =
        static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
    at = 10;
  } else if ((major == 2 || major == 3) && bytes.size() >= 12) {
    for (int i = 0; i < 4; ++i)
      len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    at = 12;
  } else {
    return std::unexpected(fmt::format("{}: .npy format version {}: allowed 1..3", path, major));
  }
  if (bytes.size() < at + len) return std::unexpected(path + ": truncated .npy header");
  const std::string h = bytes.substr(at, len);
  NpyHeader out;
  out.data_at = at + len;
  std::smatch m;
  if (!std::regex_search(h, m, std::regex(R"('descr'\s*:\s*'([^']*)')"))) {
    return std::unexpected(path + ": .npy header without 'descr'");
  }
  out.descr = m[1];
  out.fortran = std::regex_search(h, std::regex(R"('fortran_order'\s*:\s*True)"));
  if (!std::regex_search(h, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) {
    return std::unexpected(path + ": .npy header without 'shape'");
  }
  std::stringstream dims(m[1].str());
  for (std::string d; std::getline(dims, d, ',');) {
    if (d.find_first_not_of(' ') == std::string::npos) continue;
    out.shape.push_back(std::stol(d));
  }
  return out;
}

std::expected<Eigen::MatrixXd, std::string> read_npy(const std::string& bytes,
                                                     const std::string& path) {
  auto h = npy_header(bytes, path);
  if (!h) return std::unexpected(h.error());
  if (h->shape.empty() || h->shape.size() > 2) {
    return std::unexpected(fmt::format("{}: {} dimensions: allowed 1 or 2", path, h->shape.size()));
  }
  const long rows = h->shape.size() == 2 ? h->shape[0] : 1;
  const long cols = h->shape.back();
  size_t item = 0;
  double (*load)(const char*) = nullptr;
  if (h->descr == "<f8")
    item = 8, load = load_as<double>;
  else if (h->descr == "<f4")
    item = 4, load = load_as<float>;
  else if (h->descr == "<i8")
    item = 8, load = load_as<int64_t>;
  else if (h->descr == "<i4")
    item = 4, load = load_as<int32_t>;
  else
    return std::unexpected(
        fmt::format("{}: dtype '{}': allowed <f8, <f4, <i8, <i4", path, h->descr));
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (rows < 0 || cols < 0 || bytes.size() < h->data_at + n * item) {
    return std::unexpected(
        fmt::format("{}: {} x {} values announced, the file is shorter", path, rows, cols));
  }
  Eigen::MatrixXd out(rows, cols);
  for (size_t k = 0; k < n; ++k) {
    const double v = load(bytes.data() + h->data_at + k * item);
    if (h->fortran)
      out(static_cast<Eigen::Index>(k % static_cast<size_t>(rows)),
          static_cast<Eigen::Index>(k / static_cast<size_t>(rows))) = v;
    else
      out(static_cast<Eigen::Index>(k / static_cast<size_t>(cols)),
          static_cast<Eigen::Index>(k % static_cast<size_t>(cols))) = v;
  }
  return out;
}

std::expected<Eigen::MatrixXd, std::string> read_csv(const std::string& text,
                                                     const std::string& path) {
  std::vector<std::vector<double>> rows;
  std::stringstream in(text);
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    std::vector<double> row;
    std::stringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) {
      char* end = nullptr;
      const double v = std::strtod(cell.c_str(), &end);
      if (end == cell.c_str() || std::string(end).find_first_not_of(" \t\r") != std::string::npos) {
        return std::unexpected(
            fmt::format("{}: line {}: '{}' is not a number", path, line_no, cell));
      }
      row.push_back(v);
    }
    if (!rows.empty() && row.size() != rows[0].size()) {
      return std::unexpected(fmt::format("{}: line {}: {} values, the first row has {}", path,
                                         line_no, row.size(), rows[0].size()));
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) return std::unexpected(path + ": no values");
  Eigen::MatrixXd out(static_cast<Eigen::Index>(rows.size()),
                      static_cast<Eigen::Index>(rows[0].size()));
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c)
      out(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = rows[r][c];
  }
  return out;
}

}  // namespace

std::expected<Eigen::MatrixXd, std::string> read_matrix_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  std::stringstream buf;
  buf << in.rdbuf();
  return ends_with(path, ".npy") ? read_npy(buf.str(), path) : read_csv(buf.str(), path);
}

std::string matrix_csv(const Eigen::MatrixXd& m) {
  std::string out;
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    for (Eigen::Index c = 0; c < m.cols(); ++c)
      out += fmt::format("{}{:.17g}", c ? "," : "", m(r, c));
    out += "\n";
  }
  return out;
}

std::expected<void, std::string> write_matrix_file(const std::string& path,
                                                   const Eigen::MatrixXd& m) {
  std::ofstream out(path, std::ios::binary);
  if (!out)
    return std::unexpected(fmt::format("{}: cannot write ({})", path, std::strerror(errno)));
  if (!ends_with(path, ".npy")) {
    out << matrix_csv(m);
  } else {
    std::string header = fmt::format(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}", m.rows(), m.cols());
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    const auto len = static_cast<uint16_t>(header.size());
    out.write("\x93NUMPY\x01\x00", 8);
    const char len_bytes[2] = {static_cast<char>(len & 0xFF), static_cast<char>(len >> 8)};
    out.write(len_bytes, 2);
    out << header;
    for (Eigen::Index r = 0; r < m.rows(); ++r) {
      for (Eigen::Index c = 0; c < m.cols(); ++c) {
        const double v = m(r, c);
        out.write(reinterpret_cast<const char*>(&v), sizeof v);
      }
    }
  }
  if (!out) return std::unexpected(fmt::format("{}: write failed", path));
  return {};
}

}  // namespace xbar::client
