// chip_record_crash STATE_DIR: the writer that chip_record_test kill -9s at random moments.
//
// Resumes from the record's round count k and loops forever; round k+1 is ONE transaction
// (record_programming_run) that, on array 0 of chip XCRASH (3 x 64x64):
//   - adds 1 SET and 2 RESET pulses to every device,
//   - stores target = k+1 and readback = k+1.25 everywhere, rounds = k+1,
//   - records a fault at device index k (row-major, mod 4096) with g_uS = k+1.
// So whatever moment it dies at, a consistent record satisfies, for its own k = rounds:
// set == k, reset == 2k, target == k, readback == k+0.25, min(k, 4096) faults, the newest at
// index k-1 with g_uS == k.
// Deployments, each write its own transaction: before that round it deletes every deployment
// numbered below K-4 (K = k+1), after it it puts deployment "dep-K" on arrays K%3 and (K+1)%3,
// which takes those arrays from the previous two deployments (they become stale). So a
// consistent record holds only deployments dep-N with k-4 <= N <= k (dep-k may be missing,
// killed before its put), each owning a subset of {N%3, (N+1)%3}: all of it and "ready", or
// less and "stale"; every array row points at an existing deployment; name "crash-N" and the
// blob deployment_blob(N). After a round's writes all return it prints "committed K"
// (unbuffered), so the test can also check that every acknowledged round survived.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "chip_record.h"

namespace {

using xbar::server::ChipRecord;

// The opaque payload of dep-N; the test has the same function.
std::string deployment_blob(int n) {
  return std::string("\0", 1) + std::to_string(n) + std::string("\0\xff", 2);
}

int fail(const char* what, const xbar::Error& e) {
  std::fprintf(stderr, "chip_record_crash: %s: %s\n", what, e.message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: chip_record_crash STATE_DIR\n");
    return 2;
  }
  constexpr const char* kSerial = "XCRASH";
  constexpr int kArray = 0, kRows = 64, kCols = 64;
  auto rec = ChipRecord::open(argv[1]);
  if (!rec) return fail("open", rec.error());
  if (auto r = (*rec)->touch_chip({.serial = kSerial,
                                   .firmware_version = "crash-1",
                                   .arrays = 3,
                                   .rows = kRows,
                                   .cols = kCols});
      !r)
    return fail("touch_chip", r.error());
  auto last = (*rec)->last_programming(kSerial, kArray);
  if (!last) return fail("last_programming", last.error());
  int k = *last ? (*last)->rounds : 0;

  xbar::server::ProgrammingRun run;
  run.set_delta = Eigen::MatrixXi::Constant(kRows, kCols, 1);
  run.reset_delta = Eigen::MatrixXi::Constant(kRows, kCols, 2);
  run.programming.tol_uS = 4.0;
  run.programming.within_tol_pct = 100.0;
  for (;;) {
    const int next = k + 1;
    // Deletions first, so that round `next` commits only once every deployment below next-4
    // is gone, whatever earlier runs left behind when they were killed.
    auto deps = (*rec)->deployments(kSerial);
    if (!deps) return fail("deployments", deps.error());
    for (const auto& d : *deps)
      if (std::stoi(d.id.substr(4)) < next - 4)
        if (auto r = (*rec)->delete_deployment(d.id); !r)
          return fail("delete_deployment", r.error());
    run.programming.rounds = next;
    run.programming.target_uS = Eigen::MatrixXd::Constant(kRows, kCols, next);
    run.programming.readback_uS = Eigen::MatrixXd::Constant(kRows, kCols, next + 0.25);
    const int index = k % (kRows * kCols);
    run.faults = {{.array = kArray,
                   .row = index / kCols,
                   .col = index % kCols,
                   .kind = xbar::wire::FaultKind::kStuckLow,
                   .method = xbar::server::FaultMethod::kProgramVerify,
                   .g_uS = static_cast<double>(next)}};
    if (auto r = (*rec)->record_programming_run(kSerial, kArray, run); !r)
      return fail("record_programming_run", r.error());
    xbar::server::DeploymentRow dep{.id = "dep-" + std::to_string(next),
                                    .serial = kSerial,
                                    .name = "crash-" + std::to_string(next),
                                    .state = xbar::server::DeploymentState::kReady,
                                    .arrays = {next % 3, (next + 1) % 3},
                                    .blob = deployment_blob(next)};
    if (auto r = (*rec)->put_deployment(dep); !r) return fail("put_deployment", r.error());
    k = next;
    // write(2), not stdio: the line must be in the file before the next round can be killed.
    const std::string line = "committed " + std::to_string(k) + "\n";
    if (write(1, line.data(), line.size()) < 0) return 1;
  }
}
