// The durable chip record: round trips, upsert and accumulation semantics, validation that
// leaves the file untouched, schema/version/corruption checks, and a kill -9 crash test
// against a real writer process (chip_record_crash).
#include "chip_record.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "process.h"

namespace xbar::server {
namespace {

namespace fs = std::filesystem;
using server::DeploymentState;
using testing::TempDir;
using wire::FaultKind;

constexpr int kRows = 64, kCols = 64;

ChipInfo chip(std::string serial = "XS0001") {
  return ChipInfo{.serial = std::move(serial),
                  .firmware_version = "1.2.3",
                  .arrays = 3,
                  .rows = kRows,
                  .cols = kCols};
}

std::unique_ptr<ChipRecord> open_ok(const fs::path& dir) {
  auto r = ChipRecord::open(dir);
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? std::move(*r) : nullptr;
}

FaultEntry fault(int array, int row, int col, FaultKind kind, FaultMethod method, int64_t at_ms,
                 std::optional<double> g_uS = std::nullopt) {
  return FaultEntry{.array = array,
                    .row = row,
                    .col = col,
                    .kind = kind,
                    .method = method,
                    .found_at_ms = at_ms,
                    .g_uS = g_uS};
}

ProgrammingRecord programming(double base_uS, int rounds = 11) {
  ProgrammingRecord p;
  p.programmed_at_ms = 1'700'000'000'000;
  p.tol_uS = 4.0;
  p.target_uS.resize(kRows, kCols);
  p.readback_uS.resize(kRows, kCols);
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kCols; ++c) {
      p.target_uS(r, c) = base_uS + 0.1 * r + 0.001 * c;  // not float-exact: tests rounding
      p.readback_uS(r, c) = p.target_uS(r, c) + 1.5;
    }
  p.within_tol_pct = 99.7;
  p.rounds = rounds;
  p.abandoned = 3;
  return p;
}

// Every row of the given queries, straight from the file through a second connection: compares
// the file's contents, not what the API chooses to show.
std::string dump_queries(const fs::path& db_path, std::initializer_list<const char*> queries) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::string out;
  for (const char* sql : queries) {
    char* err = nullptr;
    sqlite3_exec(
        db, sql,
        [](void* p, int n, char** values, char**) {
          auto* s = static_cast<std::string*>(p);
          for (int i = 0; i < n; ++i) *s += std::string(values[i] ? values[i] : "NULL") + "|";
          *s += "\n";
          return 0;
        },
        &out, &err);
    EXPECT_EQ(err, nullptr) << err;
    sqlite3_free(err);
    out += "--\n";
  }
  sqlite3_close(db);
  return out;
}

// The tables of schema version 1.
std::string dump_v1_tables(const fs::path& db_path) {
  return dump_queries(
      db_path,
      {"SELECT * FROM chips ORDER BY serial",
       "SELECT * FROM faults ORDER BY serial, array, row, col",
       "SELECT * FROM endurance ORDER BY serial, array, row, col",
       "SELECT serial, array, programmed_at_ms, tol_uS, hex(target_f32le), hex(readback_f32le), "
       "within_tol_pct, rounds, abandoned FROM programming ORDER BY serial, array"});
}

// Every row of every table.
std::string dump(const fs::path& db_path) {
  return dump_v1_tables(db_path) +
         dump_queries(db_path, {"SELECT id, serial, name, state, message, created_at_ms, "
                                "updated_at_ms, archived_at_ms, hex(blob) FROM deployments "
                                "ORDER BY id",
                                "SELECT * FROM deployment_arrays ORDER BY serial, array"});
}

// Runs a raw SQL statement on the file through a second connection.
void raw_exec(const fs::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::string raw_query_text(const fs::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
    out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

TEST(ChipRecord, OpenCreatesDirWalAndVersionedSchema) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "a" / "b";
  auto rec = open_ok(dir);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->path(), dir / "xbar.db");
  EXPECT_TRUE(fs::exists(dir / "xbar.db"));
  EXPECT_EQ(raw_query_text(rec->path(), "PRAGMA user_version"), "4");
  EXPECT_EQ(raw_query_text(rec->path(), "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw_query_text(rec->path(), "PRAGMA application_id"), std::to_string(0x58424152));
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic) << ic.error().message;
  EXPECT_EQ(*ic, "ok");
  auto chips = rec->chips();
  ASSERT_TRUE(chips);
  EXPECT_TRUE(chips->empty());
}

TEST(ChipRecord, ChipsRoundTripAndTouchUpdates) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
  ASSERT_TRUE(rec->touch_chip(chip("XS0001")));
  auto chips = rec->chips();
  ASSERT_TRUE(chips);
  ASSERT_EQ(chips->size(), 2u);
  EXPECT_EQ((*chips)[0].serial, "XS0001");  // ordered by serial
  EXPECT_EQ((*chips)[0].firmware_version, "1.2.3");
  EXPECT_EQ((*chips)[0].arrays, 3);
  EXPECT_EQ((*chips)[0].rows, kRows);
  EXPECT_EQ((*chips)[0].cols, kCols);
  const int64_t first = (*chips)[0].first_seen_ms;
  EXPECT_GT(first, 1'600'000'000'000);  // a real wall-clock time
  EXPECT_EQ((*chips)[0].last_seen_ms, first);

  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ChipInfo updated = chip("XS0001");
  updated.firmware_version = "1.3.0";
  ASSERT_TRUE(rec->touch_chip(updated));
  chips = rec->chips();
  ASSERT_TRUE(chips);
  EXPECT_EQ((*chips)[0].firmware_version, "1.3.0");
  EXPECT_EQ((*chips)[0].first_seen_ms, first);
  EXPECT_GT((*chips)[0].last_seen_ms, first);

  // Same serial, other geometry: refused, nothing changed.
  const std::string before = dump(rec->path());
  ChipInfo other = chip("XS0001");
  other.rows = 32;
  auto r = rec->touch_chip(other);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("geometry"), std::string::npos) << r.error().message;
  EXPECT_EQ(dump(rec->path()), before);
}

TEST(ChipRecord, FaultUpsertKeepsFirstFoundTakesLatestMethodAndValue) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  std::vector<FaultEntry> scan = {
      fault(0, 1, 2, FaultKind::kStuckHigh, FaultMethod::kScan, 1000, 410.5),
      fault(0, 3, 4, FaultKind::kStuckLow, FaultMethod::kScan, 1000, 0.8),
      fault(2, 63, 63, FaultKind::kSlow, FaultMethod::kScan, 1000)};
  ASSERT_TRUE(rec->record_faults("XS0001", scan));

  // The same (0,1,2) seen again later by program-verify, as stuck low now; plus a new one.
  std::vector<FaultEntry> pv = {
      fault(0, 1, 2, FaultKind::kStuckLow, FaultMethod::kProgramVerify, 5000, 2.0),
      fault(1, 0, 0, FaultKind::kStuckHigh, FaultMethod::kProgramVerify, 5000, 390.0)};
  ASSERT_TRUE(rec->record_faults("XS0001", pv));

  auto all = rec->faults("XS0001");
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 4u);
  const FaultEntry& f = (*all)[0];  // ordered by array, row, col
  EXPECT_EQ(f.array, 0);
  EXPECT_EQ(f.row, 1);
  EXPECT_EQ(f.col, 2);
  EXPECT_EQ(f.kind, FaultKind::kStuckLow);
  EXPECT_EQ(f.method, FaultMethod::kProgramVerify);
  EXPECT_EQ(f.found_at_ms, 1000);      // first found kept
  EXPECT_EQ(f.confirmed_at_ms, 5000);  // latest observation
  EXPECT_EQ(f.g_uS, 2.0);
  EXPECT_EQ((*all)[1].row, 3);
  EXPECT_EQ((*all)[1].confirmed_at_ms, 1000);
  EXPECT_EQ((*all)[2].array, 1);
  EXPECT_EQ((*all)[2].found_at_ms, 5000);
  EXPECT_EQ((*all)[3].array, 2);
  EXPECT_EQ((*all)[3].kind, FaultKind::kSlow);
  EXPECT_EQ((*all)[3].g_uS, std::nullopt);  // unknown conductance stays unknown

  // An observation recorded late (older time) moves first-found back, not forward.
  ASSERT_TRUE(rec->record_faults(
      "XS0001", std::vector{fault(0, 3, 4, FaultKind::kStuckLow, FaultMethod::kManual, 500)}));
  auto a0 = rec->faults("XS0001", 0);
  ASSERT_TRUE(a0);
  ASSERT_EQ(a0->size(), 2u);
  EXPECT_EQ((*a0)[1].found_at_ms, 500);
  EXPECT_EQ((*a0)[1].confirmed_at_ms, 1000);
  EXPECT_EQ((*a0)[1].method, FaultMethod::kManual);

  // found_at_ms = 0 means now.
  ASSERT_TRUE(rec->record_faults(
      "XS0001", std::vector{fault(1, 5, 5, FaultKind::kStuckHigh, FaultMethod::kQuickCheck, 0)}));
  auto a1 = rec->faults("XS0001", 1);
  ASSERT_TRUE(a1);
  ASSERT_EQ(a1->size(), 2u);
  EXPECT_GT((*a1)[1].found_at_ms, 1'600'000'000'000);
  EXPECT_EQ((*a1)[1].method, FaultMethod::kQuickCheck);
}

TEST(ChipRecord, ReplaceFaultsIsTheNewMapOfOneArray) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->record_faults(
      "XS0001", std::vector{fault(0, 1, 1, FaultKind::kStuckHigh, FaultMethod::kScan, 100),
                            fault(0, 2, 2, FaultKind::kStuckLow, FaultMethod::kScan, 100),
                            fault(1, 7, 7, FaultKind::kStuckLow, FaultMethod::kScan, 100)}));
  // Rescan of array 0: (1,1) still stuck, (2,2) healthy now, (9,9) new.
  ASSERT_TRUE(rec->replace_faults(
      "XS0001", 0,
      std::vector{fault(0, 1, 1, FaultKind::kStuckHigh, FaultMethod::kScan, 900),
                  fault(0, 9, 9, FaultKind::kStuckHigh, FaultMethod::kScan, 900)}));
  auto a0 = rec->faults("XS0001", 0);
  ASSERT_TRUE(a0);
  ASSERT_EQ(a0->size(), 2u);
  EXPECT_EQ((*a0)[0].row, 1);
  EXPECT_EQ((*a0)[0].found_at_ms, 100);  // still the first-found time
  EXPECT_EQ((*a0)[0].confirmed_at_ms, 900);
  EXPECT_EQ((*a0)[1].row, 9);
  auto a1 = rec->faults("XS0001", 1);
  ASSERT_TRUE(a1);
  EXPECT_EQ(a1->size(), 1u);  // other arrays untouched

  // An entry for another array is refused and the map is left as it was.
  const std::string before = dump(rec->path());
  auto bad = rec->replace_faults(
      "XS0001", 0, std::vector{fault(1, 0, 0, FaultKind::kStuckHigh, FaultMethod::kScan, 1)});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("entries[0].array"), std::string::npos) << bad.error().message;
  EXPECT_EQ(dump(rec->path()), before);

  ASSERT_TRUE(rec->clear_faults("XS0001", 0));
  a0 = rec->faults("XS0001", 0);
  ASSERT_TRUE(a0);
  EXPECT_TRUE(a0->empty());
  a1 = rec->faults("XS0001", 1);
  ASSERT_TRUE(a1);
  EXPECT_EQ(a1->size(), 1u);
}

TEST(ChipRecord, EnduranceAccumulates) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  auto e = rec->endurance("XS0001", 1);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->set_pulses.rows(), kRows);
  EXPECT_EQ(e->set_pulses.cols(), kCols);
  EXPECT_EQ(e->set_pulses.sum(), 0);
  EXPECT_EQ(e->reset_pulses.sum(), 0);

  Eigen::MatrixXi set = Eigen::MatrixXi::Zero(kRows, kCols);
  Eigen::MatrixXi reset = Eigen::MatrixXi::Zero(kRows, kCols);
  set(0, 0) = 3;
  set(63, 1) = 7;
  reset(5, 6) = 2;
  ASSERT_TRUE(rec->add_pulses("XS0001", 1, set, reset));
  ASSERT_TRUE(rec->add_pulses("XS0001", 1, set, reset));
  set(0, 0) = 1;
  ASSERT_TRUE(rec->add_pulses("XS0001", 1, set, Eigen::MatrixXi::Ones(kRows, kCols)));
  e = rec->endurance("XS0001", 1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->set_pulses(0, 0), 7);
  EXPECT_EQ(e->set_pulses(63, 1), 21);  // not transposed
  EXPECT_EQ(e->set_pulses(1, 63), 0);
  EXPECT_EQ(e->set_pulses.sum(), 28);
  EXPECT_EQ(e->reset_pulses(5, 6), 5);
  EXPECT_EQ(e->reset_pulses.sum(), 4 + kRows * kCols);
  // Other arrays are separate.
  auto e0 = rec->endurance("XS0001", 0);
  ASSERT_TRUE(e0);
  EXPECT_EQ(e0->set_pulses.sum() + e0->reset_pulses.sum(), 0);
}

// 4096 upserts in one transaction with one prepared statement; prints the figure.
TEST(ChipRecord, AddPulsesFullArrayIsFast) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  const Eigen::MatrixXi ones = Eigen::MatrixXi::Ones(kRows, kCols);
  double worst_ms = 0, total_ms = 0;
  constexpr int kReps = 10;
  for (int i = 0; i < kReps; ++i) {  // the first inserts 4096 rows, the others update them
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(rec->add_pulses("XS0001", 0, ones, ones));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    worst_ms = std::max(worst_ms, ms);
    total_ms += ms;
  }
  ProgrammingRun run;
  run.programming = programming(50.0);
  run.set_delta = ones;
  run.reset_delta = ones;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rec->record_programming_run("XS0001", 0, run));
  const double run_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // A one-row transaction: what the commit's fsync alone costs on this disk.
  const auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rec->touch_chip(chip()));
  const double touch_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count();
  const auto t1 = std::chrono::steady_clock::now();
  auto e = rec->endurance("XS0001", 0);
  const double read_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->set_pulses.minCoeff(), kReps + 1);
  EXPECT_EQ(e->set_pulses.maxCoeff(), kReps + 1);
  std::printf(
      "[ figures  ] add_pulses 4096 devices: mean %.2f ms, worst %.2f ms (incl. the "
      "commit); record_programming_run: %.2f ms; one-row commit (touch_chip): %.2f ms; "
      "endurance read: %.2f ms\n",
      total_ms / kReps, worst_ms, run_ms, touch_ms, read_ms);
  // One transaction: typically a few ms. A transaction per device would cost 4096 commits,
  // each about what touch_ms measured; the bound stays far below that, and is generous for a
  // slow CI disk or a loaded machine (where the one-row commit is slower too).
  EXPECT_LT(worst_ms, std::max(1000.0, 100.0 * touch_ms)) << "one-row commit " << touch_ms << " ms";
}

TEST(ChipRecord, ProgrammingRoundTripAsFloat32) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  auto none = rec->last_programming("XS0001", 2);
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->has_value());

  const ProgrammingRecord p = programming(7.0);
  ASSERT_TRUE(rec->record_programming("XS0001", 2, p));
  auto got = rec->last_programming("XS0001", 2);
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->has_value());
  const ProgrammingRecord& q = **got;
  EXPECT_EQ(q.programmed_at_ms, p.programmed_at_ms);
  EXPECT_EQ(q.tol_uS, p.tol_uS);
  EXPECT_EQ(q.within_tol_pct, p.within_tol_pct);
  EXPECT_EQ(q.rounds, p.rounds);
  EXPECT_EQ(q.abandoned, p.abandoned);
  ASSERT_EQ(q.target_uS.rows(), kRows);
  ASSERT_EQ(q.target_uS.cols(), kCols);
  for (int r = 0; r < kRows; ++r)
    for (int c = 0; c < kCols; ++c) {
      ASSERT_EQ(q.target_uS(r, c), static_cast<double>(static_cast<float>(p.target_uS(r, c))));
      ASSERT_EQ(q.readback_uS(r, c), static_cast<double>(static_cast<float>(p.readback_uS(r, c))));
    }
  // Row-major little-endian float32 in the file: device (0,1) is bytes 4..7.
  const float f01 = static_cast<float>(p.target_uS(0, 1));
  uint32_t u = 0;
  std::memcpy(&u, &f01, 4);
  char hex[9];
  std::snprintf(hex, sizeof hex, "%02X%02X%02X%02X", u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff,
                u >> 24);
  EXPECT_EQ(raw_query_text(rec->path(), "SELECT hex(substr(target_f32le, 5, 4)) FROM programming"),
            hex);

  // A newer record replaces it; other arrays stay unprogrammed.
  ASSERT_TRUE(rec->record_programming("XS0001", 2, programming(100.0, 30)));
  got = rec->last_programming("XS0001", 2);
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ((*got)->rounds, 30);
  EXPECT_FLOAT_EQ((*got)->target_uS(0, 0), 100.0);
  auto other = rec->last_programming("XS0001", 0);
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->has_value());
}

TEST(ChipRecord, ReopenKeepsEverything) {
  TempDir tmp;
  std::string before;
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip("XS0001")));
    ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
    ASSERT_TRUE(rec->record_faults("XS0002", std::vector{fault(2, 10, 20, FaultKind::kStuckHigh,
                                                               FaultMethod::kScan, 42, 400.0)}));
    ASSERT_TRUE(rec->add_pulses("XS0001", 0, Eigen::MatrixXi::Constant(kRows, kCols, 4),
                                Eigen::MatrixXi::Constant(kRows, kCols, 5)));
    ASSERT_TRUE(rec->record_programming("XS0001", 1, programming(30.0)));
    before = dump(rec->path());
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "xbar.db-wal"));  // checkpointed at close
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(dump(rec->path()), before);
  auto chips = rec->chips();
  ASSERT_TRUE(chips);
  EXPECT_EQ(chips->size(), 2u);
  auto f = rec->faults("XS0002");
  ASSERT_TRUE(f);
  ASSERT_EQ(f->size(), 1u);
  EXPECT_EQ((*f)[0].g_uS, 400.0);
  EXPECT_EQ((*f)[0].found_at_ms, 42);
  auto e = rec->endurance("XS0001", 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->set_pulses.sum(), 4 * kRows * kCols);
  EXPECT_EQ(e->reset_pulses.sum(), 5 * kRows * kCols);
  auto p = rec->last_programming("XS0001", 1);
  ASSERT_TRUE(p && p->has_value());
  EXPECT_FLOAT_EQ((*p)->target_uS(0, 0), 30.0);
}

// Every bad input: kInvalidArgument (or kNotFound for an unknown chip) naming the field, and
// the file byte-for-byte as before, including for batches whose bad item comes last.
TEST(ChipRecord, ValidationNamesTheFieldAndChangesNothing) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->record_faults(
      "XS0001", std::vector{fault(0, 0, 0, FaultKind::kStuckHigh, FaultMethod::kScan, 7)}));
  ASSERT_TRUE(rec->add_pulses("XS0001", 0, Eigen::MatrixXi::Ones(kRows, kCols),
                              Eigen::MatrixXi::Ones(kRows, kCols)));
  ASSERT_TRUE(rec->record_programming("XS0001", 0, programming(20.0)));
  const std::string before = dump(rec->path());

  const Eigen::MatrixXi ones = Eigen::MatrixXi::Ones(kRows, kCols);
  auto with_nan = programming(20.0);
  with_nan.target_uS(3, 4) = std::nan("");
  auto with_inf = programming(20.0);
  with_inf.readback_uS(63, 0) = INFINITY;
  auto wrong_size = programming(20.0);
  wrong_size.target_uS.resize(32, 64);
  auto neg_tol = programming(20.0);
  neg_tol.tol_uS = -1;
  auto bad_pct = programming(20.0);
  bad_pct.within_tol_pct = 101;
  Eigen::MatrixXi negative = ones;
  negative(10, 11) = -1;
  std::vector<FaultEntry> last_bad(5, fault(0, 1, 1, FaultKind::kStuckLow, FaultMethod::kScan, 9));
  for (int i = 0; i < 5; ++i) last_bad[i].col = i + 1;
  last_bad.push_back(fault(0, 64, 0, FaultKind::kStuckLow, FaultMethod::kScan, 9));
  ProgrammingRun run_bad_fault;  // good pulses and programming, one bad fault at the end
  run_bad_fault.programming = programming(60.0);
  run_bad_fault.set_delta = ones;
  run_bad_fault.reset_delta = ones;
  run_bad_fault.faults = {fault(0, 2, 2, FaultKind::kStuckLow, FaultMethod::kProgramVerify, 9),
                          fault(0, 2, 3, FaultKind::kNone, FaultMethod::kProgramVerify, 9)};

  struct Case {
    const char* name;
    std::function<Result<void>()> call;
    ErrorCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"array -1", [&] { return rec->add_pulses("XS0001", -1, ones, ones); },
       ErrorCode::kInvalidArgument, "array: -1"},
      {"array 3", [&] { return rec->record_programming("XS0001", 3, programming(1)); },
       ErrorCode::kInvalidArgument, "array: 3 out of range 0..2"},
      {"set_delta size",
       [&] { return rec->add_pulses("XS0001", 0, Eigen::MatrixXi::Ones(64, 32), ones); },
       ErrorCode::kInvalidArgument, "set_delta: 64x32"},
      {"negative reset", [&] { return rec->add_pulses("XS0001", 0, ones, negative); },
       ErrorCode::kInvalidArgument, "reset_delta(10, 11)"},
      {"NaN target", [&] { return rec->record_programming("XS0001", 0, with_nan); },
       ErrorCode::kInvalidArgument, "target_uS(3, 4)"},
      {"inf readback", [&] { return rec->record_programming("XS0001", 0, with_inf); },
       ErrorCode::kInvalidArgument, "readback_uS(63, 0)"},
      {"target size", [&] { return rec->record_programming("XS0001", 0, wrong_size); },
       ErrorCode::kInvalidArgument, "target_uS: 32x64"},
      {"tol", [&] { return rec->record_programming("XS0001", 0, neg_tol); },
       ErrorCode::kInvalidArgument, "tol_uS"},
      {"pct", [&] { return rec->record_programming("XS0001", 0, bad_pct); },
       ErrorCode::kInvalidArgument, "within_tol_pct"},
      {"fault row, last of six", [&] { return rec->record_faults("XS0001", last_bad); },
       ErrorCode::kInvalidArgument, "entries[5].row: 64"},
      {"fault kind none",
       [&] {
         return rec->record_faults(
             "XS0001", std::vector{fault(0, 1, 1, FaultKind::kNone, FaultMethod::kScan, 1)});
       },
       ErrorCode::kInvalidArgument, "entries[0].kind"},
      {"fault g_uS NaN",
       [&] {
         return rec->record_faults(
             "XS0001", std::vector{fault(0, 1, 1, FaultKind::kStuckHigh, FaultMethod::kScan, 1,
                                         std::nan(""))});
       },
       ErrorCode::kInvalidArgument, "entries[0].g_uS"},
      {"run with bad fault last",
       [&] { return rec->record_programming_run("XS0001", 0, run_bad_fault); },
       ErrorCode::kInvalidArgument, "entries[1].kind"},
      {"unknown chip", [&] { return rec->add_pulses("XS9999", 0, ones, ones); },
       ErrorCode::kNotFound, "serial: chip XS9999"},
      {"empty serial", [&] { return rec->touch_chip(chip("")); }, ErrorCode::kInvalidArgument,
       "serial"},
      {"zero rows",
       [&] {
         ChipInfo c = chip("XS0003");
         c.rows = 0;
         return rec->touch_chip(c);
       },
       ErrorCode::kInvalidArgument, "rows: 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = c.call();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, c.code) << r.error().message;
    EXPECT_NE(r.error().message.find(c.field), std::string::npos) << r.error().message;
    EXPECT_EQ(dump(rec->path()), before);
  }
  // Reads validate too.
  auto e = rec->endurance("XS0001", 5);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("array: 5"), std::string::npos) << e.error().message;
  auto f = rec->faults("XS9999");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, ErrorCode::kNotFound);
}

TEST(ChipRecord, NewerSchemaVersionIsRefusedUntouched) {
  TempDir tmp;
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
  }
  const fs::path db = tmp.path() / "xbar.db";
  raw_exec(db, "PRAGMA user_version = 7");
  auto r = ChipRecord::open(tmp.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message.find("user_version 7 is newer than this build's 4"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(raw_query_text(db, "PRAGMA user_version"), "7");
}

TEST(ChipRecord, OlderVersionZeroIsMigrated) {
  // A version-0 file of ours (an empty SQLite file, as left by a crash before the first
  // migration committed) is migrated on open.
  TempDir tmp;
  const fs::path db = tmp.path() / "xbar.db";
  raw_exec(db, "PRAGMA user_version = 0");
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(raw_query_text(db, "PRAGMA user_version"), "4");
  EXPECT_TRUE(rec->touch_chip(chip()));
}

TEST(ChipRecord, NonSqliteFileGivesClearError) {
  TempDir tmp;
  {
    std::ofstream out(tmp.path() / "xbar.db", std::ios::binary);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>(i * 37 + 11));
  }
  auto r = ChipRecord::open(tmp.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("xbar.db: not an SQLite database"), std::string::npos)
      << r.error().message;
}

TEST(ChipRecord, ForeignSqliteDatabaseIsRefusedUntouched) {
  TempDir tmp;
  const fs::path db = tmp.path() / "xbar.db";
  raw_exec(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY)");
  auto r = ChipRecord::open(tmp.path());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("not an xbar record"), std::string::npos) << r.error().message;
  EXPECT_EQ(raw_query_text(db, "PRAGMA journal_mode"), "delete");  // not switched to WAL

  // No tables but a version of its own: not a blank file either.
  const fs::path other_dir = tmp.path() / "other";
  fs::create_directory(other_dir);
  raw_exec(other_dir / "xbar.db", "PRAGMA user_version = 1");
  r = ChipRecord::open(other_dir);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not an xbar record"), std::string::npos) << r.error().message;

  raw_exec(db, "PRAGMA application_id = 1234");
  r = ChipRecord::open(tmp.path());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("application_id 0x4d2"), std::string::npos) << r.error().message;
}

TEST(ChipRecord, CorruptPageIsReportedByIntegrityCheck) {
  TempDir tmp;
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip()));
    ASSERT_TRUE(rec->add_pulses("XS0001", 0, Eigen::MatrixXi::Ones(kRows, kCols),
                                Eigen::MatrixXi::Ones(kRows, kCols)));
  }
  const fs::path db = tmp.path() / "xbar.db";
  const auto size = fs::file_size(db);
  ASSERT_GT(size, 8192u);
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size - 4096 + 16));  // inside the last page
    for (int i = 0; i < 2000; ++i) f.put(static_cast<char>(0xA5));
  }
  auto rec = ChipRecord::open(tmp.path());
  ASSERT_TRUE(rec) << rec.error().message;  // the header page is intact
  auto ic = (*rec)->integrity_check();
  // Either the check lists the damage or SQLite refuses with SQLITE_CORRUPT: never "ok".
  if (ic) {
    EXPECT_NE(*ic, "ok");
  } else {
    EXPECT_EQ(ic.error().code, ErrorCode::kInternal);
  }
}

TEST(ChipRecord, StateDirProblemsAreNamed) {
  TempDir tmp;
  const fs::path file = tmp.path() / "plain-file";
  std::ofstream(file) << "x";
  auto r = ChipRecord::open(file);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("state dir " + file.string() + ": exists and is not a dir"),
            std::string::npos)
      << r.error().message;

  if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const fs::path locked = tmp.path() / "locked";
  fs::create_directory(locked);
  fs::permissions(locked, fs::perms::owner_read | fs::perms::owner_exec);
  r = ChipRecord::open(locked / "state");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(r.error().message.find("permission denied"), std::string::npos) << r.error().message;
  r = ChipRecord::open(locked);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied) << r.error().message;
  fs::permissions(locked, fs::perms::owner_all);
}

TEST(ChipRecord, ConcurrentWritersFromThreadsAllCount) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  const Eigen::MatrixXi ones = Eigen::MatrixXi::Ones(kRows, kCols);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        if (!rec->add_pulses("XS0001", t % 3, ones, ones)) ++failures;
        if (!rec->record_faults("XS0001", std::vector{fault(t % 3, t, i, FaultKind::kStuckHigh,
                                                            FaultMethod::kScan, 1)}))
          ++failures;
        if (!rec->endurance("XS0001", t % 3)) ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto e0 = rec->endurance("XS0001", 0);
  ASSERT_TRUE(e0);
  EXPECT_EQ(e0->set_pulses.minCoeff(), 10);  // threads 0 and 3, 5 rounds each
  auto f = rec->faults("XS0001");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->size(), 20u);
}

// ---- deployments ----

DeploymentRow deployment_row(std::string id, std::vector<int> arrays,
                             std::string serial = "XS0001") {
  return DeploymentRow{.id = std::move(id),
                       .serial = std::move(serial),
                       .name = "lowpass",
                       .state = DeploymentState::kReady,
                       .message = "",
                       .arrays = std::move(arrays),
                       .blob = std::string("\x08\x01\x00\x12\x00\xff", 6)};
}

TEST(ChipRecordDeployments, RoundTripOfAllFieldsIncludingABlobWithNuls) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  std::string blob("a\0b\0\0c", 6);
  blob += std::string(1, '\0');
  for (int i = 0; i < 300; ++i) blob.push_back(static_cast<char>(i));  // every byte value
  const DeploymentRow in{.id = "dep-0123456789ab",
                         .serial = "XS0001",
                         .name = "s4d kernel \xc2\xb5",
                         .state = DeploymentState::kDegraded,
                         .message = "nrmse 0.14 > 0.1",
                         .created_at_ms = 1'700'000'000'123,
                         .updated_at_ms = 5,  // ignored: the record sets it
                         .arrays = {2, 0},    // any order in, sorted out
                         .blob = blob};
  const int64_t t0 = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  ASSERT_TRUE(rec->put_deployment(in));
  auto got = rec->deployment("dep-0123456789ab");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->id, in.id);
  EXPECT_EQ(got->serial, in.serial);
  EXPECT_EQ(got->name, in.name);
  EXPECT_EQ(got->state, in.state);
  EXPECT_EQ(got->message, in.message);
  EXPECT_EQ(got->created_at_ms, in.created_at_ms);
  EXPECT_GE(got->updated_at_ms, t0);
  EXPECT_EQ(got->arrays, (std::vector<int>{0, 2}));
  ASSERT_EQ(got->blob.size(), 307u);
  EXPECT_EQ(got->blob, blob);
  // Stored as a BLOB, not as text cut at the first NUL.
  EXPECT_EQ(raw_query_text(rec->path(),
                           "SELECT typeof(blob) || ' ' || length(blob) FROM "
                           "deployments"),
            "blob 307");

  // An empty blob and no arrays are fine too; created_at_ms = 0 means now.
  DeploymentRow empty = deployment_row("dep-empty", {});
  empty.blob.clear();
  empty.state = DeploymentState::kDeploying;
  ASSERT_TRUE(rec->put_deployment(empty));
  got = rec->deployment("dep-empty");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->blob, "");
  EXPECT_TRUE(got->arrays.empty());
  EXPECT_GE(got->created_at_ms, t0);
  EXPECT_EQ(got->created_at_ms, got->updated_at_ms);
  EXPECT_EQ(raw_query_text(rec->path(),
                           "SELECT typeof(blob) FROM deployments WHERE id = "
                           "'dep-empty'"),
            "blob");

  // Replacing with created_at_ms = 0 keeps the stored creation time; everything else changes.
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  DeploymentRow again = deployment_row("dep-0123456789ab", {1});
  ASSERT_TRUE(rec->put_deployment(again));
  got = rec->deployment("dep-0123456789ab");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->created_at_ms, in.created_at_ms);
  EXPECT_EQ(got->name, "lowpass");
  EXPECT_EQ(got->state, DeploymentState::kReady);
  EXPECT_EQ(got->message, "");
  EXPECT_EQ(got->arrays, std::vector<int>{1});  // arrays 0 and 2 freed
  EXPECT_EQ(got->blob, again.blob);
  auto owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{std::nullopt, "dep-0123456789ab",
                                                              std::nullopt}));
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, "ok");
}

TEST(ChipRecordDeployments, TakingAnArrayMarksTheOwnerStaleAndMovesOwnership) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
  auto owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners) << owners.error().message;
  EXPECT_EQ(*owners, std::vector<std::optional<std::string>>(3));  // all free

  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-a", {0, 1})));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-b", {2})));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-x", {0, 1}, "XS0002")));  // other chip
  owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{"dep-a", "dep-a", "dep-b"}));
  const auto a_before = rec->deployment("dep-a");
  ASSERT_TRUE(a_before);

  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-c", {1})));
  auto a = rec->deployment("dep-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->state, DeploymentState::kStale);
  EXPECT_EQ(a->message, "array 1 was taken by deployment dep-c");
  EXPECT_EQ(a->arrays, std::vector<int>{0});
  EXPECT_GT(a->updated_at_ms, a_before->updated_at_ms);
  EXPECT_EQ(a->blob, a_before->blob);  // only state, message and arrays change
  EXPECT_EQ(a->created_at_ms, a_before->created_at_ms);
  auto b = rec->deployment("dep-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state, DeploymentState::kReady);  // untouched
  EXPECT_EQ(b->message, "");
  owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{"dep-a", "dep-c", "dep-b"}));
  // The same array numbers on another chip are another chip's.
  auto x = rec->deployment("dep-x");
  ASSERT_TRUE(x);
  EXPECT_EQ(x->state, DeploymentState::kReady);
  EXPECT_EQ(x->arrays, (std::vector<int>{0, 1}));

  // One put taking arrays from two deployments, two of them from the same one.
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-b", {2})));  // re-put: not its own taker
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-c", {0, 1})));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-d", {0, 1, 2})));
  a = rec->deployment("dep-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->message, "array 0 was taken by deployment dep-c");
  EXPECT_TRUE(a->arrays.empty());
  auto c = rec->deployment("dep-c");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state, DeploymentState::kStale);
  EXPECT_EQ(c->message, "arrays 0, 1 were taken by deployment dep-d");
  EXPECT_TRUE(c->arrays.empty());
  b = rec->deployment("dep-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state, DeploymentState::kStale);
  EXPECT_EQ(b->message, "array 2 was taken by deployment dep-d");
  owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{"dep-d", "dep-d", "dep-d"}));
  owners = rec->array_owners("XS0002");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{"dep-x", "dep-x", std::nullopt}));

  // set_deployment_state: state and message only.
  ASSERT_TRUE(rec->set_deployment_state("dep-d", DeploymentState::kFailed, "cancelled"));
  auto d = rec->deployment("dep-d");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->state, DeploymentState::kFailed);
  EXPECT_EQ(d->message, "cancelled");
  EXPECT_EQ(d->arrays, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(d->name, "lowpass");
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, "ok");
}

TEST(ChipRecordDeployments, DeleteFreesArraysAndIsNotFoundTheSecondTime) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-a", {0, 2})));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-b", {1})));
  ASSERT_TRUE(rec->delete_deployment("dep-a"));
  auto owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners,
            (std::vector<std::optional<std::string>>{std::nullopt, "dep-b", std::nullopt}));
  EXPECT_EQ(raw_query_text(rec->path(), "SELECT count(*) FROM deployment_arrays"), "1");
  auto gone = rec->deployment("dep-a");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  EXPECT_NE(gone.error().message.find("id: no deployment dep-a"), std::string::npos)
      << gone.error().message;

  const std::string before = dump(rec->path());
  auto again = rec->delete_deployment("dep-a");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound) << again.error().message;
  EXPECT_NE(again.error().message.find("dep-a"), std::string::npos) << again.error().message;
  EXPECT_EQ(dump(rec->path()), before);

  // A freed array is taken by a new deployment without making anyone stale.
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-c", {0})));
  auto b = rec->deployment("dep-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state, DeploymentState::kReady);
  auto list = rec->deployments("XS0001");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 2u);
}

TEST(ChipRecordDeployments, ListIsNewestFirstThenById) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
  auto empty = rec->deployments("XS0001");
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_TRUE(empty->empty());
  auto put = [&](std::string id, int64_t created, std::string serial = "XS0001") {
    DeploymentRow row = deployment_row(std::move(id), {}, std::move(serial));
    row.created_at_ms = created;
    ASSERT_TRUE(rec->put_deployment(row));
  };
  put("dep-3", 3000);
  put("dep-1", 1000);
  put("dep-2b", 2000);
  put("dep-2a", 2000);  // same time: by id
  put("dep-9", 9000, "XS0002");
  auto list = rec->deployments("XS0001");
  ASSERT_TRUE(list) << list.error().message;
  std::vector<std::string> ids;
  for (const DeploymentRow& d : *list) ids.push_back(d.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"dep-3", "dep-2a", "dep-2b", "dep-1"}));
  list = rec->deployments("XS0002");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "dep-9");
  // The list carries the arrays too.
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-1", {1, 2})));  // keeps created 1000
  list = rec->deployments("XS0001");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 4u);
  EXPECT_EQ(list->back().id, "dep-1");
  EXPECT_EQ(list->back().arrays, (std::vector<int>{1, 2}));
  auto unknown = rec->deployments("XS9999");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

// Bad input: kInvalidArgument (kNotFound for an unknown chip or id) naming the field, and the
// file byte-for-byte as before, in particular no other deployment marked stale.
TEST(ChipRecordDeployments, ValidationNamesTheFieldAndChangesNothing) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-a", {0, 1})));
  const std::string before = dump(rec->path());

  auto with = [](std::function<void(DeploymentRow&)> edit) {
    DeploymentRow row = deployment_row("dep-new", {1, 2});  // would take array 1 from dep-a
    edit(row);
    return row;
  };
  struct Case {
    const char* name;
    std::function<Result<void>()> call;
    ErrorCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"array 3",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) {
               r.arrays = {1, 3};
             })); },
       ErrorCode::kInvalidArgument, "arrays[1]: 3 out of range 0..2 for chip XS0001"},
      {"array -1",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) {
               r.arrays = {-1, 1};
             })); },
       ErrorCode::kInvalidArgument, "arrays[0]: -1 out of range 0..2"},
      {"array twice",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) {
               r.arrays = {1, 2, 1};
             })); },
       ErrorCode::kInvalidArgument, "arrays: array 1 listed twice"},
      {"unknown serial",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) { r.serial = "XS9999"; })); },
       ErrorCode::kNotFound, "serial: chip XS9999 is not in the record"},
      {"empty serial",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) { r.serial = ""; })); },
       ErrorCode::kInvalidArgument, "serial: length 0"},
      {"empty id", [&] { return rec->put_deployment(with([](DeploymentRow& r) { r.id = ""; })); },
       ErrorCode::kInvalidArgument, "id: length 0 out of range 1..128"},
      {"long id",
       [&] {
         return rec->put_deployment(with([](DeploymentRow& r) { r.id = std::string(129, 'd'); }));
       },
       ErrorCode::kInvalidArgument, "id: length 129"},
      {"state",
       [&] {
         return rec->put_deployment(
             with([](DeploymentRow& r) { r.state = DeploymentState::kVerifying; }));
       },
       ErrorCode::kInvalidArgument, "state: 'verifying' is never recorded"},
      {"created_at_ms",
       [&] { return rec->put_deployment(with([](DeploymentRow& r) { r.created_at_ms = -1; })); },
       ErrorCode::kInvalidArgument, "created_at_ms: -1"},
      {"set state unknown id",
       [&] { return rec->set_deployment_state("dep-zz", DeploymentState::kReady, ""); },
       ErrorCode::kNotFound, "id: no deployment dep-zz"},
      {"set state verifying",
       [&] { return rec->set_deployment_state("dep-a", DeploymentState::kVerifying, ""); },
       ErrorCode::kInvalidArgument, "state: 'verifying' is never recorded"},
      {"set state empty id",
       [&] { return rec->set_deployment_state("", DeploymentState::kReady, ""); },
       ErrorCode::kInvalidArgument, "id: length 0"},
      {"delete unknown id", [&] { return rec->delete_deployment("dep-zz"); }, ErrorCode::kNotFound,
       "id: no deployment dep-zz"},
      {"delete empty id", [&] { return rec->delete_deployment(""); }, ErrorCode::kInvalidArgument,
       "id: length 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = c.call();
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, c.code) << r.error().message;
    EXPECT_NE(r.error().message.find(c.field), std::string::npos) << r.error().message;
    EXPECT_EQ(dump(rec->path()), before);
  }
  auto a = rec->deployment("dep-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->state, DeploymentState::kReady);
  EXPECT_EQ(a->arrays, (std::vector<int>{0, 1}));
  // Reads validate too.
  auto d = rec->deployment("");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, ErrorCode::kInvalidArgument);
  auto o = rec->array_owners("XS9999");
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, ErrorCode::kNotFound);
  EXPECT_NE(o.error().message.find("serial: chip XS9999"), std::string::npos) << o.error().message;
}

TEST(ChipRecordDeployments, SurviveCloseAndReopen) {
  TempDir tmp;
  std::string before;
  std::vector<DeploymentRow> listed;
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip()));
    ASSERT_TRUE(rec->put_deployment(deployment_row("dep-a", {0, 1})));
    ASSERT_TRUE(rec->put_deployment(deployment_row("dep-b", {1})));
    ASSERT_TRUE(rec->set_deployment_state("dep-b", DeploymentState::kDegraded, "nrmse 0.2"));
    auto l = rec->deployments("XS0001");
    ASSERT_TRUE(l);
    listed = *l;
    before = dump(rec->path());
  }
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(dump(rec->path()), before);
  auto l = rec->deployments("XS0001");
  ASSERT_TRUE(l);
  EXPECT_EQ(*l, listed);
  auto owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners);
  EXPECT_EQ(*owners, (std::vector<std::optional<std::string>>{"dep-a", "dep-b", std::nullopt}));
  auto b = rec->deployment("dep-b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state, DeploymentState::kDegraded);
  EXPECT_EQ(b->message, "nrmse 0.2");
  EXPECT_EQ(b->blob, deployment_row("x", {}).blob);
}

TEST(ChipRecordDeployments, VersionOneFileGetsTheTablesOnOpenAndKeepsItsData) {
  TempDir tmp;
  const fs::path db = tmp.path() / "xbar.db";
  std::string v1_rows;
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip()));
    ASSERT_TRUE(rec->record_faults(
        "XS0001", std::vector{fault(1, 2, 3, FaultKind::kStuckHigh, FaultMethod::kScan, 77)}));
    ASSERT_TRUE(rec->record_programming("XS0001", 0, programming(12.0)));
  }
  // Make it the file a version 1 build leaves: version 1 is version 2 without the two tables.
  raw_exec(db, "DROP TABLE deployment_arrays; DROP TABLE deployments; PRAGMA user_version = 1;");
  EXPECT_EQ(raw_query_text(db, "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'deploy%'"),
            "0");
  v1_rows = dump_v1_tables(db);
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(raw_query_text(db, "PRAGMA user_version"), "4");
  EXPECT_EQ(dump_v1_tables(db), v1_rows);
  ASSERT_TRUE(rec->put_deployment(deployment_row("dep-a", {2})));
  auto owners = rec->array_owners("XS0001");
  ASSERT_TRUE(owners) << owners.error().message;
  EXPECT_EQ(*owners,
            (std::vector<std::optional<std::string>>{std::nullopt, std::nullopt, "dep-a"}));
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, "ok");
}

// Runs raw SQL on the file through a second connection and returns SQLite's result code (for
// statements that must fail).
int raw_exec_rc(const fs::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) return -1;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return rc;
}

TEST(ChipRecordMigration, Version2FilesGainTheLostStateAndKeepTheirRows) {
  TempDir tmp;
  const fs::path db = tmp.path() / "xbar.db";
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip()));
    DeploymentRow row = deployment_row("dep-old", {1});
    row.state = DeploymentState::kReady;
    ASSERT_TRUE(rec->put_deployment(row));
  }
  // Make it the file a version 2 build leaves: without version 4's column and index, the
  // state CHECK without 'lost'.
  raw_exec(db,
           "ALTER TABLE deployments DROP COLUMN archived_at_ms; DROP INDEX deployments_listing; "
           "CREATE INDEX deployments_by_serial ON deployments (serial, created_at_ms); "
           "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = replace(sql, "
           "', ''lost'')', ')') WHERE name = 'deployments'; PRAGMA writable_schema = OFF; "
           "PRAGMA user_version = 2;");
  raw_exec(db, "PRAGMA schema_version = 1000");
  EXPECT_EQ(raw_query_text(db,
                           "SELECT instr(sql, 'lost') FROM sqlite_schema WHERE name = "
                           "'deployments'"),
            "0");
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(raw_query_text(db, "PRAGMA user_version"), "4");
  auto old = rec->deployment("dep-old");
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->state, DeploymentState::kReady);
  EXPECT_EQ(old->arrays, std::vector<int>{1});
  ASSERT_TRUE(
      rec->set_deployment_state("dep-old", DeploymentState::kLost, "arrays read back blank"));
  EXPECT_EQ(rec->deployment("dep-old")->state, DeploymentState::kLost);
  // The migrated table still refuses a state outside the set, written by anyone.
  EXPECT_EQ(raw_exec_rc(db, "UPDATE deployments SET state = 'gone' WHERE id = 'dep-old'"),
            SQLITE_CONSTRAINT);
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, "ok");
}

TEST(ChipRecordMigration, Version3FilesGainTheArchiveColumnAndKeepTheirRows) {
  TempDir tmp;
  const fs::path db = tmp.path() / "xbar.db";
  {
    auto rec = open_ok(tmp.path());
    ASSERT_TRUE(rec);
    ASSERT_TRUE(rec->touch_chip(chip()));
    ASSERT_TRUE(rec->put_deployment(deployment_row("dep-ready", {0})));
    DeploymentRow failed = deployment_row("dep-failed", {});
    failed.state = DeploymentState::kFailed;
    failed.message = "array 1: link down";
    failed.created_at_ms = 1000;
    ASSERT_TRUE(rec->put_deployment(failed));
  }
  // Make it the file a version 3 build leaves: no archived_at_ms, the old index.
  raw_exec(db,
           "ALTER TABLE deployments DROP COLUMN archived_at_ms; DROP INDEX deployments_listing; "
           "CREATE INDEX deployments_by_serial ON deployments (serial, created_at_ms); "
           "PRAGMA user_version = 3;");
  const char* kHasColumn =
      "SELECT count(*) FROM pragma_table_info('deployments') WHERE name = 'archived_at_ms'";
  ASSERT_EQ(raw_query_text(db, kHasColumn), "0");
  auto v3_rows = [&] {
    return dump_queries(db, {"SELECT id, serial, name, state, message, created_at_ms, "
                             "updated_at_ms, hex(blob) FROM deployments ORDER BY id",
                             "SELECT * FROM deployment_arrays ORDER BY serial, array"});
  };
  const std::string before = v3_rows();

  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  EXPECT_EQ(raw_query_text(db, "PRAGMA user_version"), "4");
  EXPECT_EQ(raw_query_text(db, kHasColumn), "1");
  EXPECT_EQ(raw_query_text(db,
                           "SELECT group_concat(name) FROM sqlite_schema WHERE type = "
                           "'index' AND tbl_name = 'deployments' AND sql IS NOT NULL"),
            "deployments_listing");
  EXPECT_EQ(v3_rows(), before);  // every row as it was, nothing archived
  EXPECT_EQ(raw_query_text(db, "SELECT count(*) FROM deployments WHERE archived_at_ms IS NULL"),
            "2");
  auto ready = rec->deployment("dep-ready");
  ASSERT_TRUE(ready) << ready.error().message;
  EXPECT_EQ(ready->archived_at_ms, 0);
  EXPECT_EQ(ready->arrays, std::vector<int>{0});

  // Retention works on the migrated file, and the CHECK keeps active deployments unarchived
  // even against a hand edit.
  auto archived = rec->archive_inactive_deployments(
      "XS0001", 0, [](const DeploymentRow&, int64_t) { return std::string("slim"); });
  ASSERT_TRUE(archived) << archived.error().message;
  EXPECT_EQ(*archived, std::vector<std::string>{"dep-failed"});
  EXPECT_NE(raw_exec_rc(db, "UPDATE deployments SET archived_at_ms = 5 WHERE id = 'dep-ready'"),
            SQLITE_OK);
  EXPECT_NE(raw_exec_rc(db, "UPDATE deployments SET state = 'ready' WHERE id = 'dep-failed'"),
            SQLITE_OK);
  EXPECT_NE(raw_exec_rc(db, "UPDATE deployments SET archived_at_ms = -1 WHERE id = 'dep-failed'"),
            SQLITE_OK);
  auto ic = rec->integrity_check();
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, "ok");
}

// A deployment row with a state, a creation time and arrays.
DeploymentRow aged_row(std::string id, DeploymentState state, int64_t created_at_ms,
                       std::vector<int> arrays = {}) {
  DeploymentRow r = deployment_row(id, std::move(arrays));
  r.state = state;
  r.message = "why " + id;
  r.created_at_ms = created_at_ms;
  r.blob = "full blob of " + id;
  return r;
}

// What the test's retention turns a blob into: says whose it was and when it was archived.
std::string slim_blob(const DeploymentRow& row, int64_t archived_at_ms) {
  return "slim " + row.id + " at " + std::to_string(archived_at_ms);
}

std::vector<std::string> ids_of(const std::vector<DeploymentRow>& rows) {
  std::vector<std::string> ids;
  for (const DeploymentRow& r : rows) ids.push_back(r.id);
  return ids;
}

TEST(ChipRecordRetention, ArchivesTheOldestInactiveBeyondKeepAndKeepsTheirHistory) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
  // Oldest first. Inactive: 01 failed, 02 stale, 03 lost (owns array 2), 07 failed, 08 stale,
  // 09 failed; active: 04 ready (array 0), 05 degraded (array 1), 06 deploying.
  for (const DeploymentRow& r : {aged_row("dep-01", DeploymentState::kFailed, 1000),
                                 aged_row("dep-02", DeploymentState::kStale, 2000),
                                 aged_row("dep-03", DeploymentState::kLost, 3000, {2}),
                                 aged_row("dep-04", DeploymentState::kReady, 4000, {0}),
                                 aged_row("dep-05", DeploymentState::kDegraded, 5000, {1}),
                                 aged_row("dep-06", DeploymentState::kDeploying, 6000),
                                 aged_row("dep-07", DeploymentState::kFailed, 7000),
                                 aged_row("dep-08", DeploymentState::kStale, 8000),
                                 aged_row("dep-09", DeploymentState::kFailed, 9000)}) {
    ASSERT_TRUE(rec->put_deployment(r)) << r.id;
  }
  DeploymentRow other = aged_row("dep-x1", DeploymentState::kFailed, 100);
  other.serial = "XS0002";
  ASSERT_TRUE(rec->put_deployment(other));
  auto before = rec->deployments("XS0001");
  ASSERT_TRUE(before);
  const int64_t t0 = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();

  // keep 2: 09 and 08 stay whole; of 07, 03, 02, 01, all but 03 (it owns array 2).
  auto archived = rec->archive_inactive_deployments("XS0001", 2, slim_blob);
  ASSERT_TRUE(archived) << archived.error().message;
  EXPECT_EQ(*archived, (std::vector<std::string>{"dep-07", "dep-02", "dep-01"}));
  auto after = rec->deployments("XS0001");
  ASSERT_TRUE(after);
  ASSERT_EQ(ids_of(*after), ids_of(*before));  // nothing removed, same order
  for (size_t i = 0; i < after->size(); ++i) {
    const DeploymentRow& was = (*before)[i];
    const DeploymentRow& now = (*after)[i];
    SCOPED_TRACE(now.id);
    if (std::ranges::find(*archived, now.id) == archived->end()) {
      EXPECT_EQ(now, was);  // untouched, to the byte
      continue;
    }
    EXPECT_GE(now.archived_at_ms, t0);
    EXPECT_EQ(now.blob, slim_blob(was, now.archived_at_ms));
    // The history stays: everything but the blob.
    DeploymentRow expected = was;
    expected.blob = now.blob;
    expected.archived_at_ms = now.archived_at_ms;
    EXPECT_EQ(now, expected);
  }
  // GetDeployment's read answers for an archived id.
  auto one = rec->deployment("dep-01");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->state, DeploymentState::kFailed);
  EXPECT_EQ(one->message, "why dep-01");
  EXPECT_GT(one->archived_at_ms, 0);
  // The other chip is not this chip's retention.
  EXPECT_EQ(rec->deployment("dep-x1")->archived_at_ms, 0);

  // Again with the same keep: archived ones no longer count, nothing left to archive.
  const std::string settled = dump(rec->path());
  archived = rec->archive_inactive_deployments("XS0001", 2, slim_blob);
  ASSERT_TRUE(archived);
  EXPECT_TRUE(archived->empty());
  EXPECT_EQ(dump(rec->path()), settled);

  // keep 0: every inactive one that owns no array; never the active ones nor 03.
  archived = rec->archive_inactive_deployments("XS0001", 0, slim_blob);
  ASSERT_TRUE(archived);
  EXPECT_EQ(*archived, (std::vector<std::string>{"dep-09", "dep-08"}));
  for (const char* id : {"dep-03", "dep-04", "dep-05", "dep-06"}) {
    EXPECT_EQ(rec->deployment(id)->archived_at_ms, 0) << id;
  }
  // Once another deployment takes its array, 03 (now stale) owns none and goes too.
  ASSERT_TRUE(rec->put_deployment(aged_row("dep-10", DeploymentState::kReady, 10000, {2})));
  EXPECT_EQ(rec->deployment("dep-03")->state, DeploymentState::kStale);
  archived = rec->archive_inactive_deployments("XS0001", 0, slim_blob);
  ASSERT_TRUE(archived);
  EXPECT_EQ(*archived, std::vector<std::string>{"dep-03"});
}

TEST(ChipRecordRetention, AnArchivedDeploymentNeverBecomesActiveAgainExceptByAWholePut) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->put_deployment(aged_row("dep-01", DeploymentState::kStale, 1000)));
  ASSERT_TRUE(rec->archive_inactive_deployments("XS0001", 0, slim_blob));
  const std::string before = dump(rec->path());
  for (const DeploymentState state :
       {DeploymentState::kReady, DeploymentState::kDegraded, DeploymentState::kDeploying}) {
    SCOPED_TRACE(std::string(server::name(state)));
    auto r = rec->set_deployment_state("dep-01", state, "back");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition) << r.error().message;
    EXPECT_NE(r.error().message.find("state: deployment dep-01 is archived"), std::string::npos)
        << r.error().message;
    EXPECT_EQ(dump(rec->path()), before);
  }
  // Between inactive states it may move (e.g. reconciliation, a later note).
  ASSERT_TRUE(rec->set_deployment_state("dep-01", DeploymentState::kLost, "gone"));
  EXPECT_GT(rec->deployment("dep-01")->archived_at_ms, 0);
  // A put writes a whole deployment again: not archived any more.
  DeploymentRow whole = aged_row("dep-01", DeploymentState::kReady, 0, {1});
  ASSERT_TRUE(rec->put_deployment(whole));
  auto got = rec->deployment("dep-01");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->archived_at_ms, 0);
  EXPECT_EQ(got->blob, whole.blob);
  EXPECT_EQ(got->created_at_ms, 1000);  // kept, as for any replacing put
  // Bad input changes nothing.
  auto unknown = rec->archive_inactive_deployments("XS9999", 0, slim_blob);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST(ChipRecordDeployments, VisitGoesInListingOrderFromACursor) {
  TempDir tmp;
  auto rec = open_ok(tmp.path());
  ASSERT_TRUE(rec);
  ASSERT_TRUE(rec->touch_chip(chip()));
  ASSERT_TRUE(rec->touch_chip(chip("XS0002")));
  for (const DeploymentRow& r : {aged_row("dep-a", DeploymentState::kReady, 3000, {0}),
                                 aged_row("dep-c", DeploymentState::kReady, 2000),
                                 aged_row("dep-b", DeploymentState::kStale, 2000, {1}),
                                 aged_row("dep-d", DeploymentState::kFailed, 1000),
                                 aged_row("dep-e", DeploymentState::kReady, 500)}) {
    ASSERT_TRUE(rec->put_deployment(r));
  }
  DeploymentRow other = aged_row("dep-x", DeploymentState::kReady, 2500);
  other.serial = "XS0002";
  ASSERT_TRUE(rec->put_deployment(other));
  ASSERT_EQ(*rec->archive_inactive_deployments("XS0001", 0, slim_blob),
            std::vector<std::string>{"dep-d"});

  auto visit = [&](DeploymentQuery q, size_t stop_at = 1000) {
    std::vector<std::string> seen;
    auto r = rec->visit_deployments("XS0001", q, [&](const DeploymentRow& row) {
      seen.push_back(row.id);
      if (row.id == "dep-b") {
        EXPECT_EQ(row.arrays, std::vector<int>{1});
      }
      if (row.id == "dep-d") {
        EXPECT_EQ(row.blob.rfind("slim dep-d", 0), 0u) << row.blob;
      }
      return seen.size() < stop_at;
    });
    EXPECT_TRUE(r) << r.error().message;
    return seen;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(visit({}), (V{"dep-a", "dep-b", "dep-c", "dep-e"}));
  EXPECT_EQ(visit({.include_archived = true}), (V{"dep-a", "dep-b", "dep-c", "dep-d", "dep-e"}));
  // After a cursor: older, or as old with a greater id; the cursor need not exist.
  EXPECT_EQ(visit({.after = DeploymentCursor{2000, "dep-b"}}), (V{"dep-c", "dep-e"}));
  EXPECT_EQ(visit({.after = DeploymentCursor{2000, "dep-b"}, .include_archived = true}),
            (V{"dep-c", "dep-d", "dep-e"}));
  EXPECT_EQ(visit({.after = DeploymentCursor{2000, "dep-bb"}}), (V{"dep-c", "dep-e"}));
  EXPECT_EQ(visit({.after = DeploymentCursor{2000, "dep-c"}}), (V{"dep-e"}));
  EXPECT_EQ(visit({.after = DeploymentCursor{9999, ""}}), (V{"dep-a", "dep-b", "dep-c", "dep-e"}));
  EXPECT_EQ(visit({.after = DeploymentCursor{500, "dep-e"}}), V{});
  // The visitor stops it: the row it refused is the last one it saw.
  EXPECT_EQ(visit({}, 2), (V{"dep-a", "dep-b"}));
  auto unknown = rec->visit_deployments("XS9999", {}, [](const DeploymentRow&) { return true; });
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);

  // Without blobs (the metrics' read): the same rows, archived ones included, blobs empty.
  auto with = rec->deployments("XS0001");
  auto without = rec->deployments("XS0001", /*with_blobs=*/false);
  ASSERT_TRUE(with && without);
  ASSERT_EQ(ids_of(*without), (V{"dep-a", "dep-b", "dep-c", "dep-d", "dep-e"}));
  for (size_t i = 0; i < with->size(); ++i) {
    SCOPED_TRACE((*with)[i].id);
    EXPECT_FALSE((*with)[i].blob.empty());
    EXPECT_TRUE((*without)[i].blob.empty());
    DeploymentRow expected = (*with)[i];
    expected.blob.clear();
    EXPECT_EQ((*without)[i], expected);
  }
}

// ---- crash test: a real writer process, kill -9 at random moments ----

pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// The payload chip_record_crash gives deployment dep-N (the same function is there).
std::string crash_deployment_blob(int n) {
  return std::string("\0", 1) + std::to_string(n) + std::string("\0\xff", 2);
}

// The deployments chip_record_crash leaves after round k (see its header): only dep-N with
// k-4 <= N <= k, each owning all of {N%3, (N+1)%3} and "ready", or a subset and "stale"; the
// newest ready; array_owners agreeing with every deployment's arrays; no array row without its
// deployment; and dep-`acked` present when the writer acknowledged round `acked` in this run.
void check_crash_deployments(ChipRecord& rec, int k, int acked_this_run) {
  EXPECT_EQ(raw_query_text(rec.path(),
                           "SELECT count(*) FROM deployment_arrays a LEFT JOIN deployments d "
                           "ON d.id = a.id AND d.serial = a.serial WHERE d.id IS NULL"),
            "0");
  auto list = rec.deployments("XCRASH");
  ASSERT_TRUE(list) << list.error().message;
  auto owners = rec.array_owners("XCRASH");
  ASSERT_TRUE(owners) << owners.error().message;
  ASSERT_EQ(owners->size(), 3u);
  int newest = 0;
  std::vector<std::optional<std::string>> owned(3);
  for (const DeploymentRow& d : *list) {
    SCOPED_TRACE(d.id);
    ASSERT_TRUE(d.id.starts_with("dep-"));
    const int n = std::stoi(d.id.substr(4));
    ASSERT_GE(n, std::max(1, k - 4));
    ASSERT_LE(n, k);
    newest = std::max(newest, n);
    ASSERT_EQ(d.name, "crash-" + std::to_string(n));
    ASSERT_EQ(d.blob, crash_deployment_blob(n));
    std::vector<int> all = {n % 3, (n + 1) % 3};
    std::ranges::sort(all);
    ASSERT_TRUE(std::ranges::includes(all, d.arrays));
    if (d.arrays == all) {
      ASSERT_EQ(d.state, DeploymentState::kReady);
    } else {
      ASSERT_EQ(d.state, DeploymentState::kStale);
      ASSERT_NE(d.message.find("taken by deployment dep-"), std::string::npos) << d.message;
    }
    for (int a : d.arrays) {
      ASSERT_FALSE(owned[a].has_value()) << "array " << a << " owned twice";
      owned[a] = d.id;
    }
  }
  ASSERT_EQ(*owners, owned);
  if (newest > 0) {
    auto d = rec.deployment("dep-" + std::to_string(newest));
    ASSERT_TRUE(d);
    ASSERT_EQ(d->state, DeploymentState::kReady);
  }
  if (acked_this_run > 0) {
    auto d = rec.deployment("dep-" + std::to_string(acked_this_run));
    ASSERT_TRUE(d) << d.error().message;
  }
}

// The last "committed N" line the writer printed (0 if none).
int last_acknowledged(const std::string& log) {
  int n = 0;
  size_t pos = 0;
  while ((pos = log.find("committed ", pos)) != std::string::npos) {
    pos += 10;
    const size_t end = log.find('\n', pos);
    if (end == std::string::npos) break;  // a torn last line: not acknowledged
    n = std::stoi(log.substr(pos, end - pos));
  }
  return n;
}

TEST(ChipRecordCrash, KillNineMidWriteLeavesAConsistentRecord) {
  TempDir tmp;
  const fs::path state = tmp.path() / "state";
  std::random_device rd;
  const unsigned seed = rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> kill_after_ms(20, 200);
  std::uniform_int_distribution<int> early_kill_ms(0, 30);

  int prev_k = 0, kills_with_progress = 0;
  constexpr int kKills = 20;
  for (int i = 0; i < kKills; ++i) {
    // Every 5th kill comes early, during start-up (open, WAL recovery, touch_chip); the others
    // 20-200 ms after the writer's first commit of this run, i.e. in its write loop whatever
    // the start-up time (slower under sanitizers).
    const bool early = i % 5 == 4;
    const int wait_ms = early ? early_kill_ms(rng) : kill_after_ms(rng);
    SCOPED_TRACE("kill " + std::to_string(i) + (early ? " at start-up, " : " in the loop, ") +
                 std::to_string(wait_ms) + " ms");
    const fs::path log = tmp.path() / ("writer-" + std::to_string(i) + ".log");
    const pid_t pid = spawn({CHIP_RECORD_CRASH_PATH, state.string()}, log);
    ASSERT_GT(pid, 0);
    if (!early) {
      ASSERT_TRUE(testing::eventually(
          [&] { return testing::read_file(log).find("committed") != std::string::npos; },
          testing::kGenerous))
          << "the writer never committed: " << testing::read_file(log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    const std::string out = testing::read_file(log);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer stopped by itself: " << out;
    // Rounds known committed: the writer's last acknowledgement, or what the previous check
    // found if it was killed before acknowledging any round of its own.
    const int acked_this_run = last_acknowledged(out);
    const int acked = std::max(acked_this_run, prev_k);

    auto rec = ChipRecord::open(state);
    ASSERT_TRUE(rec) << rec.error().message;
    auto ic = (*rec)->integrity_check();
    ASSERT_TRUE(ic) << ic.error().message;
    ASSERT_EQ(*ic, "ok");

    auto p = (*rec)->last_programming("XCRASH", 0);
    if (!p) {
      // Killed before even touch_chip committed, on the very first start.
      ASSERT_EQ(prev_k, 0) << p.error().message;
      ASSERT_EQ(p.error().code, ErrorCode::kNotFound) << p.error().message;
      continue;
    }
    const int k = *p ? (**p).rounds : 0;
    // Every round the writer acknowledged survived; at most the one in flight is extra.
    ASSERT_GE(k, acked);
    ASSERT_LE(k, acked + 1);
    if (k > prev_k) ++kills_with_progress;

    auto e = (*rec)->endurance("XCRASH", 0);
    ASSERT_TRUE(e) << e.error().message;
    ASSERT_EQ(e->set_pulses.minCoeff(), k);
    ASSERT_EQ(e->set_pulses.maxCoeff(), k);
    ASSERT_EQ(e->reset_pulses.minCoeff(), 2 * k);
    ASSERT_EQ(e->reset_pulses.maxCoeff(), 2 * k);
    auto f = (*rec)->faults("XCRASH", 0);
    ASSERT_TRUE(f) << f.error().message;
    ASSERT_EQ(static_cast<int>(f->size()), std::min(k, kRows * kCols));
    if (k > 0) {
      const int index = (k - 1) % (kRows * kCols);
      const auto newest = std::find_if(f->begin(), f->end(), [&](const FaultEntry& x) {
        return x.row == index / kCols && x.col == index % kCols;
      });
      ASSERT_NE(newest, f->end());
      ASSERT_EQ(newest->g_uS, static_cast<double>(k));
      const ProgrammingRecord& pr = **p;
      ASSERT_EQ(pr.target_uS.minCoeff(), k);
      ASSERT_EQ(pr.target_uS.maxCoeff(), k);
      ASSERT_EQ(pr.readback_uS.minCoeff(), k + 0.25);
      ASSERT_EQ(pr.readback_uS.maxCoeff(), k + 0.25);
    }
    check_crash_deployments(**rec, k, acked_this_run);
    if (::testing::Test::HasFatalFailure()) return;
    prev_k = k;
  }
  std::printf("[ figures  ] %d kills, %d rounds committed in total, %d kills after progress\n",
              kKills, prev_k, kills_with_progress);
  // The writer must actually have been writing when it was killed, or the test proves little.
  EXPECT_GE(kills_with_progress, kKills - kKills / 5);
}

}  // namespace
}  // namespace xbar::server
