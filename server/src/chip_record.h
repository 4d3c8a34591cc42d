// The daemon's durable record of every chip it has met, keyed by chip serial: fault map (when
// and how each fault was found), per-device pulse counts (endurance), the last programmed
// target and read-back per array, and the deployments (which deployment owns which array). One
// SQLite database, <state_dir>/xbar.db, in WAL mode with synchronous=FULL: every write below is one
// transaction, so after a kill -9 or a power loss the record holds exactly the writes whose call
// returned (given a disk that honours fsync), and nothing half-done.
//
// Thread model: one connection, guarded by a mutex; every method is thread-safe and holds the
// mutex for its whole transaction. Another process (e.g. a second xbard, or sqlite3 on the
// command line) may read the file meanwhile; writers wait up to the busy timeout (5 s).
//
// Implemented in server/src/store/, one job a file: sqlite.{h,cc} (the SQLite toolkit),
// schema.cc (schema, migrations), connection.cc (open, close, integrity check), scope.{h,cc}
// (what every call starts with), chip_health.cc (chips, faults), endurance.cc (pulse counters,
// programming records), deployments.cc and deployment_rows.cc (deployments, array owners),
// retention.cc (archiving).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "deployment_state.h"
#include "xbar/base/error.h"
#include "xbar/wire/messages.h"

struct sqlite3;  // keeps <sqlite3.h> out of every includer

namespace xbar::server {

/// How a fault was found (stored as text, see fault_method_name).
enum class FaultMethod : uint8_t { kScan = 0, kQuickCheck = 1, kProgramVerify = 2, kManual = 3 };
/// "scan", "quick_check", "program_verify", "manual".
std::string_view fault_method_name(FaultMethod m);

/// A chip as the board reports it. Times are ms since the Unix epoch.
struct ChipInfo {
  std::string serial;  // 1..64 printable ASCII characters, no spaces
  std::string firmware_version;
  int arrays = 0;  // 1..64
  int rows = 0;    // 1..1024
  int cols = 0;    // 1..1024
  // Filled by chips(); ignored by touch_chip.
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
};

/// One faulty device.
struct FaultEntry {
  int array = 0;
  int row = 0;
  int col = 0;
  wire::FaultKind kind = wire::FaultKind::kStuckHigh;  // kNone is rejected: not a fault
  FaultMethod method = FaultMethod::kScan;
  /// Writing: when this observation was made (0 = now). Reading: when the fault was first
  /// found; later observations of the same device keep it.
  int64_t found_at_ms = 0;
  /// Reading only: the latest observation. Ignored when writing.
  int64_t confirmed_at_ms = 0;
  /// The conductance the device is stuck at, when known (finite).
  std::optional<double> g_uS;

  bool operator==(const FaultEntry&) const = default;
};

/// Cumulative pulses applied to each device of one array since the chip was first met.
/// Counters are 64-bit in the file; a count above INT32_MAX reads back as INT32_MAX.
struct Endurance {
  Eigen::MatrixXi set_pulses;    // rows x cols
  Eigen::MatrixXi reset_pulses;  // rows x cols
};

/// The last program-verify of one array. The matrices are stored as float32 (the ADC gives
/// ~0.1 uS resolution; float32 keeps ~1e-5 uS at 200 uS), so they read back rounded to float.
struct ProgrammingRecord {
  int64_t programmed_at_ms = 0;  // 0 = now
  double tol_uS = 0;             // finite, >= 0
  Eigen::MatrixXd target_uS;     // rows x cols, finite
  Eigen::MatrixXd readback_uS;   // rows x cols, finite
  double within_tol_pct = 0;     // 0..100
  int rounds = 0;                // >= 0
  int abandoned = 0;             // devices abandoned, 0..rows*cols
};

/// Everything one program-verify run leaves behind, written as ONE transaction so that the
/// pulse counters, the programming record and the faults it found never disagree after a crash.
struct ProgrammingRun {
  ProgrammingRecord programming;
  Eigen::MatrixXi set_delta;       // pulses applied in this run, rows x cols, >= 0
  Eigen::MatrixXi reset_delta;     // rows x cols, >= 0
  std::vector<FaultEntry> faults;  // devices abandoned as stuck (upserted; must be `array`)
};

/// A deployment: something programmed onto one or more arrays of a chip, owning them until it
/// is deleted or another deployment takes them. Times are ms since the Unix epoch.
struct DeploymentRow {
  std::string id;      // primary key, e.g. "dep-0123456789ab"; 1..128 bytes
  std::string serial;  // chip serial (the chip must exist: touch_chip was called)
  std::string name;
  /// Stored as its name() in the `state` column; never kVerifying (the running daemon's view).
  DeploymentState state = DeploymentState::kDeploying;
  std::string message;  // why, for degraded/failed/stale
  /// Writing: 0 = keep the stored creation time when replacing, else now.
  int64_t created_at_ms = 0;
  /// Set by the record on every write of the deployment and on every change of its state
  /// (ignored when writing); archiving does not change it (archived_at_ms says when).
  int64_t updated_at_ms = 0;
  /// Reading: when retention archived it (archive_inactive_deployments), 0 = not archived.
  /// Ignored when writing: put_deployment writes a whole deployment, which is not archived.
  int64_t archived_at_ms = 0;
  /// Arrays this deployment occupies. Writing: any order, no duplicates. Reading: sorted.
  std::vector<int> arrays;
  std::string blob;  // opaque bytes (a serialized protobuf message), stored as a BLOB

  bool operator==(const DeploymentRow&) const = default;
};

/// A position in the listing order of a chip's deployments (created_at_ms descending, then id
/// ascending): the last deployment of a page.
struct DeploymentCursor {
  int64_t created_at_ms = 0;
  std::string id;

  bool operator==(const DeploymentCursor&) const = default;
};

/// Which deployments visit_deployments reads.
struct DeploymentQuery {
  /// Start after this deployment in the listing order; nullopt: from the newest. The cursor
  /// need not name an existing deployment (it may have been deleted since).
  std::optional<DeploymentCursor> after;
  /// Archived deployments too (else only those not archived).
  bool include_archived = false;
};

/// Turns the blob of a deployment being archived into the blob to keep (e.g. without its
/// per-device matrices); `archived_at_ms` is the archive time being recorded.
using ArchiveBlob = std::function<std::string(const DeploymentRow& row, int64_t archived_at_ms)>;

/// \context Any thread, with or without a board turn or array lock: every method takes the
/// record's own mutex for its one transaction and calls nothing that waits for the board.
class ChipRecord {
 public:
  static constexpr int kSchemaVersion = 4;
  static constexpr const char* kFileName = "xbar.db";

  /// Opens (creating if missing) <state_dir>/xbar.db, and the directory itself, migrating an
  /// older schema. Errors: kPermissionDenied (directory or file not accessible),
  /// kInvalidArgument (not a directory, not an SQLite file, an SQLite file that is not an xbar
  /// record), kUnsupported (written by a newer build: schema version above kSchemaVersion),
  /// kBusy (locked by another process beyond the busy timeout), kInternal (anything else).
  static Result<std::unique_ptr<ChipRecord>> open(const std::filesystem::path& state_dir);

  ~ChipRecord();
  ChipRecord(const ChipRecord&) = delete;
  ChipRecord& operator=(const ChipRecord&) = delete;

  const std::filesystem::path& path() const { return path_; }

  /// Records a chip (first time) or updates its firmware version and last-seen time. A known
  /// serial reporting a different geometry is refused: the stored matrices would not fit.
  Result<void> touch_chip(const ChipInfo& chip);
  /// Every chip met, by serial.
  Result<std::vector<ChipInfo>> chips();

  /// Upserts faults: a device already recorded keeps its first-found time and takes the new
  /// kind, method, conductance and confirmation time. Entries may span arrays.
  Result<void> record_faults(std::string_view serial, std::span<const FaultEntry> entries);
  /// Makes `entries` the whole fault map of `array` (e.g. after a full rescan): devices not in
  /// `entries` are removed, the others upserted as in record_faults (first-found time kept).
  /// All-or-nothing, so a crash never leaves the array with half a map.
  Result<void> replace_faults(std::string_view serial, int array,
                              std::span<const FaultEntry> entries);
  /// Removes every fault of `array` (replace_faults with nothing).
  Result<void> clear_faults(std::string_view serial, int array);
  /// Faults of one array, or of all arrays; ordered by array, row, col.
  Result<std::vector<FaultEntry>> faults(std::string_view serial,
                                         std::optional<int> array = std::nullopt);

  /// Adds pulse counts (rows x cols, each >= 0) to the endurance counters of `array`.
  Result<void> add_pulses(std::string_view serial, int array, const Eigen::MatrixXi& set_delta,
                          const Eigen::MatrixXi& reset_delta);
  /// The counters of `array` (zeros for a device never pulsed).
  Result<Endurance> endurance(std::string_view serial, int array);

  /// Replaces the last programming record of `array`.
  Result<void> record_programming(std::string_view serial, int array,
                                  const ProgrammingRecord& record);
  /// The last programming record of `array`, or nullopt if it was never programmed.
  Result<std::optional<ProgrammingRecord>> last_programming(std::string_view serial, int array);

  /// add_pulses + record_programming + record_faults in one transaction.
  Result<void> record_programming_run(std::string_view serial, int array,
                                      const ProgrammingRun& run);

  /// Inserts or replaces the deployment `row.id` (not archived, whether it was or not) in one
  /// transaction, and makes it the owner of row.arrays on row.serial (arrays it owned before
  /// and does not list are freed). Any OTHER
  /// deployment that owned one of those arrays loses it and, in the same transaction, becomes
  /// "stale" with message "array N was taken by deployment <id>" ("arrays N, M were taken ..."
  /// when it loses several). Errors: kInvalidArgument naming the field (id empty or over 128
  /// bytes, state kVerifying, created_at_ms < 0, an array out of range 0..arrays-1 or
  /// listed twice), kNotFound (serial not in the record). A failed call changes nothing.
  Result<void> put_deployment(const DeploymentRow& row);
  /// Updates state and message only (and updated_at_ms). kNotFound for an unknown id;
  /// kFailedPrecondition for deploying/ready/degraded on an archived deployment (its blob no
  /// longer holds what the arrays would need).
  /// kInvalidArgument for kVerifying (never recorded).
  Result<void> set_deployment_state(std::string_view id, DeploymentState state,
                                    std::string_view message);
  /// One deployment, archived or not. kNotFound for an unknown id.
  Result<DeploymentRow> deployment(std::string_view id);
  /// The deployments of a chip, archived ones included, newest first (created_at_ms
  /// descending, then id ascending); without their blobs (empty) unless `with_blobs`, which
  /// makes it cheap enough for every metrics refresh however long the history. kNotFound for
  /// an unknown chip.
  Result<std::vector<DeploymentRow>> deployments(std::string_view serial, bool with_blobs = true);
  /// Pages through the deployments of a chip: calls `visit` with each deployment `query`
  /// selects (with its arrays and blob), in the listing order of deployments(), until `visit`
  /// returns false (the deployment it was given then is not taken: it starts the next page)
  /// or none is left. Reads one snapshot, one row at a time (a page of large blobs is never
  /// all in memory here). `visit` runs with the record's mutex held: it must not call the
  /// record. kNotFound for an unknown chip.
  Result<void> visit_deployments(std::string_view serial, const DeploymentQuery& query,
                                 const std::function<bool(const DeploymentRow&)>& visit);
  /// Retention (docs/record.md, "Retention"), in one transaction: of the chip's inactive
  /// deployments (failed, stale, lost) that are not archived yet, the newest `keep` (listing
  /// order) stay as they are; each older one that owns no array is archived: its blob is
  /// replaced by `slim(row, now)` and archived_at_ms set to now. Its id, name, state, message,
  /// created_at_ms and updated_at_ms stay. deploying, ready and degraded deployments, and
  /// any deployment that still owns an array, are never archived. Returns the ids archived,
  /// newest first. kNotFound for an unknown chip.
  Result<std::vector<std::string>> archive_inactive_deployments(std::string_view serial,
                                                                size_t keep,
                                                                const ArchiveBlob& slim);
  /// The deployment id owning each array of the chip (nullopt = free); size = the chip's arrays.
  Result<std::vector<std::optional<std::string>>> array_owners(std::string_view serial);
  /// Deletes the deployment and frees its arrays. kNotFound for an unknown id.
  Result<void> delete_deployment(std::string_view id);

  /// PRAGMA integrity_check and foreign_key_check: "ok", or the problems found, one a line.
  Result<std::string> integrity_check();

 private:
  struct Geometry {
    int arrays = 0, rows = 0, cols = 0;
  };
  /// The chip a call works on: looked up when its Scope begins (kNotFound if unknown), and
  /// `array`, when given, checked against it.
  struct ChipRef {
    std::string_view serial;
    std::optional<int> array;
  };
  /// What every call starts with (store/scope.h): mu_ held, a transaction begun, the chip
  /// looked up. The methods are implemented across server/src/store/.
  class Scope;

  ChipRecord(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}

  /// The prologue of every writing call: takes mu_, begins a write transaction (BEGIN
  /// IMMEDIATE; rolled back unless Scope::commit is called) and looks `chip` up if given.
  Result<Scope> write_scope(std::string_view what, std::optional<ChipRef> chip = std::nullopt);
  /// The same for a reading call: a read transaction (one snapshot), ended when the Scope is.
  Result<Scope> read_scope(std::string_view what, std::optional<ChipRef> chip = std::nullopt);

  // The *_locked helpers run inside a Scope the caller began (mu_ held, in a transaction).
  Result<void> upsert_faults_locked(std::string_view serial, const Geometry& g,
                                    std::span<const FaultEntry> entries,
                                    std::optional<int> only_array, std::string_view what);
  Result<void> add_pulses_locked(std::string_view serial, int array, const Geometry& g,
                                 const Eigen::MatrixXi& set_delta,
                                 const Eigen::MatrixXi& reset_delta, std::string_view what);
  Result<void> record_programming_locked(std::string_view serial, int array, const Geometry& g,
                                         const ProgrammingRecord& record, std::string_view what);

  // Reads the rows of deployments matching `where_sql` (bound to `key`), with their arrays
  // (and their blobs unless `with_blobs` is false).
  Result<std::vector<DeploymentRow>> read_deployments_locked(std::string_view where_sql,
                                                             std::string_view key,
                                                             std::string_view what,
                                                             bool with_blobs = true);

  std::mutex mu_;
  sqlite3* db_;
  std::filesystem::path path_;
};

}  // namespace xbar::server
