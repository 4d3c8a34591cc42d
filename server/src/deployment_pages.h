// ListDeployments one page at a time (Google AIP-158), and the retention of old inactive
// deployments (docs/record.md, "Retention"; docs/api.md, "Listing deployments").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chip_record.h"
#include "xbar/v1/kernels.pb.h"

namespace xbar::server {

/// page_size 0 means this many deployments.
inline constexpr uint32_t kDefaultPageSize = 50;
/// The largest page_size accepted; above it the request is refused (INVALID_ARGUMENT).
inline constexpr uint32_t kMaxPageSize = 1000;
/// A page ends before the deployment that would take its deployments past this many bytes
/// serialized (gRPC's default message limit is 4 MiB); a single larger deployment comes alone.
inline constexpr size_t kMaxPageBytes = size_t{1} << 20;
/// The longest page_token accepted (a token is at most 278 characters).
inline constexpr size_t kMaxPageTokenChars = 512;
/// Retention's default: inactive deployments kept whole per chip.
inline constexpr size_t kDefaultKeepInactive = 20;

/// What a page token says: where the next page starts, and what the listing was.
struct PageToken {
  DeploymentCursor after;  // the last deployment of the page that handed the token out
  bool include_archived = false;
  std::string serial;  // the chip listed

  bool operator==(const PageToken&) const = default;
};

/// The opaque text of a token: base64url (no padding) of a version byte, the flags, the
/// cursor and the serial, and an FNV-1a check of those bytes.
std::string encode_page_token(const PageToken& token);
/// The token `text` encodes. kInvalidArgument naming page_token when it is not one (too long,
/// not base64url, truncated, a failed check, an unknown version).
Result<PageToken> decode_page_token(std::string_view text);

/// Drops the per-device matrices of every placement (target_uS, readback_uS,
/// programming.final_uS) and the model's fidelity clips (Calibration.fidelity_clips).
void strip_matrices(v1::Deployment* deployment);

/// The blob an archived deployment keeps: `row.blob` (a serialized v1::Deployment) without
/// its matrices and with archived_at_ms set. A blob that does not parse is kept as it is.
std::string archived_blob(const DeploymentRow& row, int64_t archived_at_ms);

/// One page of ListDeployments for the chip `serial`: validates page_size and page_token
/// (kInvalidArgument naming the field and the allowed range, before reading anything), then
/// reads the deployments after the token, up to page_size of them and `max_page_bytes`
/// serialized, and sets next_page_token when more follow. `correct`, when given, is applied to
/// each row first (DeploymentStates::correct: the state callers see). A chip the record never
/// met has no deployments.
Result<v1::ListDeploymentsResponse> list_deployments_page(
    ChipRecord& record, const std::string& serial, const v1::ListDeploymentsRequest& request,
    const std::function<void(DeploymentRow&)>& correct = {}, size_t max_page_bytes = kMaxPageBytes);

/// Retention for the chip `serial`: ChipRecord::archive_inactive_deployments with
/// archived_blob, keeping the newest `keep_inactive` inactive deployments whole; nullopt
/// (retention off) archives nothing. Returns the ids archived.
Result<std::vector<std::string>> apply_retention(ChipRecord& record, const std::string& serial,
                                                 std::optional<size_t> keep_inactive);

}  // namespace xbar::server
