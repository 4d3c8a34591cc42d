#include "deployment_pages.h"

#include <fmt/format.h>

#include <optional>

#include "xbar/v1/models.pb.h"

namespace xbar::server {
namespace {

constexpr uint8_t kTokenVersion = 1;
constexpr uint8_t kFlagIncludeArchived = 0x01;
constexpr size_t kMaxSerial = 64;
constexpr size_t kMaxId = 128;
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

uint32_t fnv1a(std::string_view bytes) {
  uint32_t h = 2166136261u;
  for (const char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return h;
}

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_be(std::string_view in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

std::string base64url(std::string_view bytes) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : bytes) {
    acc = (acc << 8) | static_cast<uint8_t>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

std::optional<std::string> unbase64url(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const size_t v = kAlphabet.find(c);
    if (v == std::string_view::npos) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // What is left must be the zero padding bits of a canonical encoding (2 or 4 bits; 6 would
  // be a character that encodes no byte).
  if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

Error bad_token(std::string_view why) {
  return Error{ErrorCode::kInvalidArgument,
               fmt::format("page_token: {}: pass a next_page_token unchanged, with the same "
                           "include_archived, or leave page_token empty for the first page",
                           why)};
}

// The size of a length-delimited field of `size` bytes in a message: tag, length, bytes.
size_t field_bytes(size_t size) {
  size_t n = 2;  // the tag (field 1) and the first byte of the length
  for (size_t s = size >> 7; s != 0; s >>= 7) ++n;
  return n + size;
}

// A deployment of the record as the API shows it; the record's state, message and archive
// time win over the blob's.
v1::Deployment to_proto(const DeploymentRow& r, bool full) {
  v1::Deployment d;
  if (!d.ParseFromString(r.blob)) {
    d.Clear();
    d.set_id(r.id);
    d.set_name(r.name);
    d.set_serial(r.serial);
    d.set_created_at_ms(r.created_at_ms);
  }
  set_state(d, r.state);
  d.set_message(r.message);
  d.set_archived_at_ms(r.archived_at_ms);
  if (!full) strip_matrices(&d);
  return d;
}

}  // namespace

std::string encode_page_token(const PageToken& token) {
  std::string raw;
  raw.push_back(static_cast<char>(kTokenVersion));
  raw.push_back(static_cast<char>(token.include_archived ? kFlagIncludeArchived : 0));
  put_be(raw, static_cast<uint64_t>(token.after.created_at_ms), 8);
  const std::string_view serial = std::string_view(token.serial).substr(0, kMaxSerial);
  const std::string_view id = std::string_view(token.after.id).substr(0, kMaxId);
  raw.push_back(static_cast<char>(serial.size()));
  raw.append(serial);
  raw.push_back(static_cast<char>(id.size()));
  raw.append(id);
  put_be(raw, fnv1a(raw), 4);
  return base64url(raw);
}

Result<PageToken> decode_page_token(std::string_view text) {
  if (text.size() > kMaxPageTokenChars) {
    return std::unexpected(
        bad_token(fmt::format("{} characters, allowed up to {}", text.size(), kMaxPageTokenChars)));
  }
  const std::optional<std::string> raw = unbase64url(text);
  constexpr size_t kFixed = 2 + 8 + 1 + 1 + 4;  // version, flags, time, 2 lengths, check
  if (!raw || raw->size() < kFixed) {
    return std::unexpected(bad_token("not a token of ListDeployments (corrupted or truncated)"));
  }
  const std::string_view b = *raw;
  const std::string_view body = b.substr(0, b.size() - 4);
  if (get_be(b, b.size() - 4, 4) != fnv1a(body)) {
    return std::unexpected(bad_token("not a token of ListDeployments (its check fails)"));
  }
  if (static_cast<uint8_t>(b[0]) != kTokenVersion) {
    return std::unexpected(bad_token(
        fmt::format("token version {} is not one this xbard reads", static_cast<uint8_t>(b[0]))));
  }
  const auto flags = static_cast<uint8_t>(b[1]);
  const size_t serial_len = static_cast<uint8_t>(b[10]);
  const size_t id_at = 11 + serial_len;
  if (flags & ~kFlagIncludeArchived || serial_len > kMaxSerial || id_at >= body.size() ||
      static_cast<uint8_t>(b[id_at]) > kMaxId ||
      id_at + 1 + static_cast<uint8_t>(b[id_at]) != body.size()) {
    return std::unexpected(bad_token("not a token of ListDeployments (malformed)"));
  }
  PageToken t;
  t.include_archived = (flags & kFlagIncludeArchived) != 0;
  t.after.created_at_ms = static_cast<int64_t>(get_be(b, 2, 8));
  t.serial = std::string(b.substr(11, serial_len));
  t.after.id = std::string(body.substr(id_at + 1));
  return t;
}

void strip_matrices(v1::Deployment* d) {
  for (v1::Placement& p : *d->mutable_placements()) {
    p.clear_target_us();
    p.clear_readback_us();
    p.mutable_programming()->clear_final_us();
  }
  // The model's fidelity clips are per-sample data too (up to 64 x 100 000 steps).
  if (d->has_model()) d->mutable_model()->mutable_calibration()->clear_fidelity_clips();
}

std::string archived_blob(const DeploymentRow& row, int64_t archived_at_ms) {
  v1::Deployment d;
  if (!d.ParseFromString(row.blob)) return row.blob;
  strip_matrices(&d);
  d.set_archived_at_ms(archived_at_ms);
  return d.SerializeAsString();
}

Result<v1::ListDeploymentsResponse> list_deployments_page(
    ChipRecord& record, const std::string& serial, const v1::ListDeploymentsRequest& req,
    const std::function<void(DeploymentRow&)>& correct, size_t max_page_bytes) {
  if (req.page_size() > kMaxPageSize) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("page_size = {}: allowed 0..{} (0 means the default, {}); a "
                                  "page may hold fewer, follow next_page_token",
                                  req.page_size(), kMaxPageSize, kDefaultPageSize));
  }
  const size_t page_size = req.page_size() == 0 ? kDefaultPageSize : req.page_size();
  DeploymentQuery query;
  query.include_archived = req.include_archived();
  if (!req.page_token().empty()) {
    auto t = decode_page_token(req.page_token());
    if (!t) return std::unexpected(t.error());
    if (t->include_archived != req.include_archived()) {
      return std::unexpected(bad_token(
          fmt::format("issued for include_archived = {}, this request has include_archived = {}",
                      t->include_archived, req.include_archived())));
    }
    if (t->serial != serial) {
      return std::unexpected(bad_token(
          fmt::format("issued for the deployments of chip {}, the board attached is chip {}",
                      t->serial, serial)));
    }
    query.after = std::move(t->after);
  }

  v1::ListDeploymentsResponse out;
  size_t bytes = 0;
  bool more = false;
  DeploymentCursor last;
  auto visited = record.visit_deployments(serial, query, [&](const DeploymentRow& r) {
    if (static_cast<size_t>(out.deployments_size()) == page_size) {
      more = true;
      return false;
    }
    v1::Deployment d;
    if (correct) {
      DeploymentRow seen = r;
      correct(seen);
      d = to_proto(seen, req.full());
    } else {
      d = to_proto(r, req.full());
    }
    const size_t cost = field_bytes(d.ByteSizeLong());
    if (out.deployments_size() > 0 && bytes + cost > max_page_bytes) {
      more = true;
      return false;
    }
    bytes += cost;
    *out.add_deployments() = std::move(d);
    last = {r.created_at_ms, r.id};
    return true;
  });
  if (!visited) {
    if (visited.error().code == ErrorCode::kNotFound) return out;  // chip never met
    return std::unexpected(visited.error());
  }
  if (more) {
    out.set_next_page_token(encode_page_token(
        {.after = std::move(last), .include_archived = req.include_archived(), .serial = serial}));
  }
  return out;
}

Result<std::vector<std::string>> apply_retention(ChipRecord& record, const std::string& serial,
                                                 std::optional<size_t> keep_inactive) {
  if (!keep_inactive) return std::vector<std::string>{};
  return record.archive_inactive_deployments(serial, *keep_inactive, archived_blob);
}

}  // namespace xbar::server
