// The link's faults (SIM_LINK, docs/protocol.md §4.12; docs/reliability.md): dropped,
// corrupted, duplicated and reordered frames and board restarts, on the in-process twin. The
// driver retries with the same sequence number (answered from the board's reply cache), a
// restart is refused once so a pulse batch is never resent blindly, program-verify goes on
// from what it reads back, and the loop reloads its programs. 100 randomised schedules.
// Unplugs: the link is cut and the board is away for a while; the driver re-opens it (in
// process, and through a real xbar-fwsim process on a Unix socket).
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "process.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/golden.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/model/model.h"
#include "xbar/twin/firmware.h"
#include "xbar/twin/inprocess_transport.h"
#include "xbar/twin/profile.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/messages.h"

namespace xbar {
namespace {

TEST(LinkFaults, SimLinkMessagesRoundTrip) {
  wire::SimLinkRequest q;
  q.op = wire::LinkOp::kSet;
  q.faults = {1, 2, 3, 4, 5, 6, 7, 8, 0x0123456789abcdefULL, 9};
  EXPECT_EQ(q.encode().size(), 36u);
  auto d = wire::decode_sim_link_request(q.encode());
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->faults.delay_reply, 6);
  EXPECT_EQ(d->faults.restart, 7);
  EXPECT_EQ(d->faults.unplug, 8);
  EXPECT_EQ(d->faults.seed, 0x0123456789abcdefULL);
  EXPECT_EQ(d->faults.unplug_ms, 9);
  auto bad = q.encode();
  bad[0] = 2;
  ASSERT_FALSE(wire::decode_sim_link_request(bad).has_value());
  EXPECT_NE(wire::decode_sim_link_request(bad).error().find("SIM_LINK.op"), std::string::npos);
  wire::SimLinkReply r;
  r.restarts = 9;
  r.pulse_batches_repeated = 2;
  r.unplugs = 4;
  EXPECT_EQ(r.encode().size(), 64u);
  auto dr = wire::decode_sim_link_reply(r.encode());
  ASSERT_TRUE(dr.has_value());
  EXPECT_EQ(dr->restarts, 9u);
  EXPECT_EQ(dr->pulse_batches_repeated, 2u);
  EXPECT_EQ(dr->unplugs, 4u);
}

TEST(LinkFaults, BoardUriNamesTheLinkKeyAndItsRange) {
  auto b = Board::open("sim:profile=ideal,link_dup=0.7");
  ASSERT_FALSE(b.has_value());
  EXPECT_NE(b.error().message.find("link_dup = '0.7': allowed 0..0.5"), std::string::npos)
      << b.error().message;
  auto ok = Board::open("sim:profile=ideal,link_drop_reply=0.25,link_seed=3");
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  auto s = (*ok)->sim_link();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->faults.drop_reply, 16384);
}

// The counter the schedules rely on can fail: a pulse batch resent as it was after a restart,
// with the restart acknowledged (what a host that ignored the RESTARTED rule would do), is
// counted as applied twice. Resent without the acknowledgment it is refused again.
TEST(LinkFaults, ABatchResentAfterARestartIsCountedTwice) {
  auto profile = twin::load_profile("ideal");
  ASSERT_TRUE(profile.has_value());
  twin::Firmware fw(*profile, {});
  const auto s = fw.open_session();
  wire::PulseBatchRequest q;
  q.array = 0;
  q.polarity = wire::Polarity::kSet;
  q.mask.assign(64 * 64 / 8, 0);
  wire::mask_set(q.mask, 3);
  q.codes.push_back({42598, 36000, 5});  // 3.0 V SET, gate 1.0 V, 100 ns
  const auto frame = wire::encode_frame(wire::Opcode::kPulseBatch, 0, 77, q.encode());
  auto first = wire::decode_frame(fw.handle(s, frame));
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->header.flags & wire::kFlagError)
      << wire::decode_error_reply(first->payload)->message;
  // A retry with the same bytes is answered from the cache: not executed again.
  EXPECT_EQ(fw.handle(s, frame), fw.handle(s, frame));
  fw.restart();
  auto refused = wire::decode_frame(fw.handle(s, frame));
  ASSERT_TRUE(refused.has_value());
  ASSERT_TRUE(refused->header.flags & wire::kFlagError);
  EXPECT_EQ(wire::decode_error_reply(refused->payload)->code, wire::BoardErrorCode::kRestarted);
  uint32_t seq = 1000;  // a new one per query, or the reply cache answers
  const auto stats = [&] {
    const auto r = wire::decode_frame(fw.handle(
        s, wire::encode_frame(wire::Opcode::kSimLink, 0, seq++, wire::SimLinkRequest{}.encode())));
    return *wire::decode_sim_link_reply(r->payload);
  };
  EXPECT_EQ(stats().pulse_batches_repeated, 0u);
  auto again = wire::decode_frame(fw.handle(s, frame));  // no acknowledgment: refused again
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(wire::decode_error_reply(again->payload)->code, wire::BoardErrorCode::kRestarted);
  EXPECT_EQ(stats().pulse_batches_repeated, 0u);
  // The blind resend, acknowledging the restart: executed, a second time.
  fw.handle(s,
            wire::encode_frame(wire::Opcode::kPulseBatch, wire::kFlagAckRestart, 77, q.encode()));
  EXPECT_EQ(stats().pulse_batches_repeated, 1u);
  EXPECT_EQ(stats().restarts, 1u);
}

kernel::KernelSpec small_kernel() {
  kernel::KernelSpec k;
  k.log_dt = std::log(0.3);
  for (int j = 0; j < 14; ++j) {
    k.a.emplace_back(-0.5, 0.4 * j);
    k.c.emplace_back(0.3 * std::cos(j), 0.2 * std::sin(j));
  }
  return k;
}

struct Totals {
  wire::SimLinkReply link;
  int pv_ok = 0, pv_failed = 0, loop_ok = 0, loop_failed = 0, pv_restarts = 0;
  uint64_t reopens = 0;
};

void add(Totals& t, const wire::SimLinkReply& r) {
  t.link.requests_dropped += r.requests_dropped;
  t.link.requests_corrupted += r.requests_corrupted;
  t.link.replies_dropped += r.replies_dropped;
  t.link.replies_corrupted += r.replies_corrupted;
  t.link.replies_duplicated += r.replies_duplicated;
  t.link.replies_delayed += r.replies_delayed;
  t.link.restarts += r.restarts;
  t.link.unplugs += r.unplugs;
  t.link.pulse_batches_repeated += r.pulse_batches_repeated;
}

// One schedule: link faults drawn from `seed`, then program-verify of an 8x8 block and a
// closed-loop run of a small kernel through them.
void run_schedule(uint64_t seed, Totals& totals) {
  SCOPED_TRACE("schedule " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> rate(0.0, 0.1), restart(0.0, 0.05), unplug(0.0, 0.04);
  wire::LinkFaults f;
  auto p16 = [](double p) { return static_cast<uint16_t>(p * 65536); };
  f.drop_request = p16(rate(rng));
  f.corrupt_request = p16(rate(rng));
  f.drop_reply = p16(rate(rng));
  f.corrupt_reply = p16(rate(rng));
  f.duplicate_reply = p16(rate(rng));
  f.delay_reply = p16(rate(rng));
  f.restart = p16(restart(rng));
  f.unplug = p16(unplug(rng));
  f.unplug_ms = 20;  // the host re-opens the link when the board is back (a new session)
  f.seed = seed;

  auto board = Board::open("sim:profile=ideal,seed=" + std::to_string(seed));
  ASSERT_TRUE(board.has_value());
  Board& b = **board;

  // The kernel's loop, on array 1 set exactly, and its fault-free output as the reference.
  const kernel::CompiledKernel ck = kernel::compile(small_kernel(), kernel::Window{});
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) {
      ASSERT_TRUE(b.sim_inject_fault(1, r, c, wire::FaultKind::kNone, ck.target_uS(r, c)));
    }
  }
  const std::vector<model::PlacedKernel> placed = {
      {ck, kernel::Placement::identity(), 1, ck.target_uS, 2.0}};
  Eigen::VectorXd u = kernel::fidelity_inputs(600)[static_cast<size_t>(seed % 3)];
  u *= 1.5 / u.cwiseAbs().maxCoeff();
  auto clean = model::hardware_kernels(b, placed);
  ASSERT_TRUE(clean.has_value());
  auto reference = (*clean)({u});
  ASSERT_TRUE(reference.has_value());

  // Program-verify an 8x8 block of array 0 (the rest skipped) with the faults on.
  Eigen::MatrixXd target = Eigen::MatrixXd::Constant(64, 64, 10.0);
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip =
      Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>::Constant(64, 64, true);
  std::uniform_real_distribution<double> g(10.0, 150.0);
  for (int r = 8; r < 24; ++r) {
    for (int c = 8; c < 24; ++c) {
      target(r, c) = g(rng);
      skip(r, c) = false;
    }
  }
  ASSERT_TRUE(b.sim_link(f).has_value());
  ProgramVerifyConfig cfg;
  auto pv = program_verify(b, 0, target, cfg, {}, &skip);
  // The loop, twice: the first run may meet the faults, the second must recover (programs
  // reloaded after a restart).
  std::vector<Result<std::vector<Eigen::VectorXd>>> runs;
  for (int i = 0; i < 2; ++i) {
    auto fn = model::hardware_kernels(b, placed);
    runs.push_back(fn ? (*fn)({u}) : std::unexpected(fn.error()));
  }

  // Faults off: what happened, and what the array holds.
  auto stats = b.sim_link(wire::LinkFaults{});
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_EQ(stats->pulse_batches_repeated, 0u) << "a pulse batch was applied twice";
  add(totals, *stats);
  totals.reopens += b.client().reopens();
  auto truth = b.sim_ground_truth(0);
  ASSERT_TRUE(truth.has_value());
  if (pv) {
    ++totals.pv_ok;
    totals.pv_restarts += pv->board_restarts;
    // What program-verify reports is what the array holds (the ideal twin reads exactly, up to
    // the ADC's step), and every converged device is within tolerance.
    for (int r = 8; r < 24; ++r) {
      for (int c = 8; c < 24; ++c) {
        EXPECT_NEAR(pv->final_uS(r, c), (*truth)(r, c), 0.6) << r << "," << c;
        if (pv->outcome(r, c) == static_cast<uint8_t>(DeviceOutcome::kConverged)) {
          EXPECT_LE(std::abs((*truth)(r, c) - target(r, c)), cfg.tol_uS + 0.6) << r << "," << c;
        }
      }
    }
  } else {
    ++totals.pv_failed;
    EXPECT_FALSE(pv.error().message.empty());
    EXPECT_TRUE(pv.error().code == ErrorCode::kTimeout || pv.error().code == ErrorCode::kRestarted)
        << error_code_name(pv.error().code) << ": " << pv.error().message;
  }
  // Skipped devices were never pulsed.
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) {
      if (skip(r, c)) {
        EXPECT_EQ(pv ? pv->set_pulses(r, c) + pv->reset_pulses(r, c) : 0, 0);
      }
    }
  }
  for (const auto& run : runs) {
    if (run) {
      ++totals.loop_ok;
      // Through the faults the run is the fault-free run, bit for bit (the same noise keys).
      EXPECT_LT(((*run)[0] - (*reference)[0]).norm(), 1e-12);
    } else {
      ++totals.loop_failed;
      EXPECT_FALSE(run.error().message.empty());
      EXPECT_TRUE(run.error().code == ErrorCode::kTimeout ||
                  run.error().code == ErrorCode::kRestarted)
          << error_code_name(run.error().code) << ": " << run.error().message;
    }
  }
}

// Program-verify of a 16x16 block with random targets; the rest of the array skipped.
struct Block {
  Eigen::MatrixXd target = Eigen::MatrixXd::Constant(64, 64, 10.0);
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> skip =
      Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>::Constant(64, 64, true);
  explicit Block(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> g(10.0, 150.0);
    for (int r = 8; r < 24; ++r) {
      for (int c = 8; c < 24; ++c) {
        target(r, c) = g(rng);
        skip(r, c) = false;
      }
    }
  }
};

// What program-verify reports is what the array holds, converged devices are within
// tolerance, and no batch was applied twice.
void check_programmed(Board& b, const Block& block, const ProgramVerifyResult& pv) {
  auto stats = b.sim_link(wire::LinkFaults{});
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_EQ(stats->pulse_batches_repeated, 0u) << "a pulse batch was applied twice";
  auto truth = b.sim_ground_truth(0);
  ASSERT_TRUE(truth.has_value());
  for (int r = 8; r < 24; ++r) {
    for (int c = 8; c < 24; ++c) {
      EXPECT_NEAR(pv.final_uS(r, c), (*truth)(r, c), 0.6) << r << "," << c;
      if (pv.outcome(r, c) == static_cast<uint8_t>(DeviceOutcome::kConverged)) {
        EXPECT_LE(std::abs((*truth)(r, c) - block.target(r, c)), ProgramVerifyConfig{}.tol_uS + 0.6)
            << r << "," << c;
      }
    }
  }
}

// The cable pulled during program-verify, on an xbar-fwsim process: the board closes the
// connection and refuses new ones while it is away, then comes back restarted. The driver
// reconnects, checks the serial, and program-verify goes on from what it reads back.
TEST(LinkFaults, SocketBoardUnpluggedDuringProgramVerifyIsReopenedAndFinishes) {
  testing::TempDir dir;
  const auto sock = dir.path() / "fwsim.sock";
  testing::Process fwsim(
      {XBAR_FWSIM_PATH, "--profile", "ideal", "--seed", "4", "--listen", "unix:" + sock.string()},
      dir.path() / "fwsim.log");
  ASSERT_TRUE(testing::eventually([&] { return std::filesystem::exists(sock); }));
  auto board = Board::open("unix:" + sock.string());
  ASSERT_TRUE(board.has_value()) << board.error().message;
  Board& b = **board;
  wire::LinkFaults f;
  f.unplug = 6554;  // 10 % of the exchanges
  f.unplug_ms = 50;
  f.seed = 11;
  ASSERT_TRUE(b.sim_link(f).has_value());
  const Block block(4);
  auto pv = program_verify(b, 0, block.target, ProgramVerifyConfig{}, {}, &block.skip);
  ASSERT_TRUE(pv.has_value()) << pv.error().message << "\n" << fwsim.output();
  EXPECT_GE(b.client().reopens(), 1u);
  auto stats = b.sim_link();
  ASSERT_TRUE(stats.has_value());
  EXPECT_GE(stats->unplugs, b.client().reopens());
  EXPECT_NE(fwsim.output().find("closing the connection"), std::string::npos) << fwsim.output();
  std::printf("socket: %u unplugs, %llu re-opens, %d batches met one\n", stats->unplugs,
              static_cast<unsigned long long>(b.client().reopens()), pv->board_restarts);
  check_programmed(b, block, *pv);
}

// A board away for longer than the host waits: the request fails with kUnavailable naming
// what happened; the next one fails at once; once the board is back, requests go through.
TEST(LinkFaults, BoardAwayLongerThanTheReopenWindowFailsClearlyThenRecovers) {
  auto profile = twin::load_profile("ideal");
  ASSERT_TRUE(profile.has_value());
  auto fw = std::make_shared<twin::Firmware>(*profile, twin::FirmwareOptions{});
  ProtocolOptions po;
  po.reopen_window = std::chrono::milliseconds(150);
  po.timeout = std::chrono::milliseconds(200);
  auto b = Board::connect(std::make_unique<InProcessTransport>(fw), po);
  ASSERT_TRUE(b.has_value()) << b.error().message;
  // The test bench's side door (handle(): no link) pulls the cable: 3 of 4 exchanges unplug
  // the board, and it stays away (65 s, the most unplug_ms holds) until the test plugs it in
  // again, so "still away" below holds however long the steps in between take.
  const auto side = fw->open_session();
  wire::SimLinkRequest pull{wire::LinkOp::kSet, {}};
  pull.faults.unplug = 65535;
  pull.faults.unplug_ms = 65535;
  fw->handle(side, wire::encode_frame(wire::Opcode::kSimLink, 0, 1, pull.encode()));
  Result<ConductanceMap> r = make_error(ErrorCode::kInternal, "not tried");
  for (int i = 0; i < 20; ++i) {
    r = (*b)->read_array(0);
    if (!r) break;
  }
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("unplugged"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("not back within 150 ms"), std::string::npos)
      << r.error().message;
  auto again = (*b)->status();  // the link is known to be down: one attempt, no wait
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(again.error().message.find("the board is gone"), std::string::npos)
      << again.error().message;
  EXPECT_FALSE((*b)->client().link_up());
  // The cable stays in from now on, and once the board is back requests go through.
  fw->handle(side, wire::encode_frame(wire::Opcode::kSimLink, 0, 2,
                                      wire::SimLinkRequest{wire::LinkOp::kSet, {}}.encode()));
  EXPECT_FALSE(fw->present());
  fw->plug_in();
  auto back = (*b)->read_array(0);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_TRUE((*b)->client().link_up());
  EXPECT_EQ((*b)->client().reopens(), 1u);
}

// A different board answers after the re-open (same port, another serial): the host must not
// go on programming it.
TEST(LinkFaults, ADifferentBoardAfterReopenIsRefused) {
  auto profile = twin::load_profile("ideal");
  ASSERT_TRUE(profile.has_value());
  twin::FirmwareOptions o1;
  o1.chip_seed = 1;
  twin::FirmwareOptions o2;
  o2.chip_seed = 2;
  auto first = std::make_shared<twin::Firmware>(*profile, o1);
  auto second = std::make_shared<twin::Firmware>(*profile, o2);
  // A transport whose re-open lands on the second board.
  class Swapping : public InProcessTransport {
   public:
    Swapping(std::shared_ptr<twin::Firmware> a, std::shared_ptr<twin::Firmware> b)
        : InProcessTransport(std::move(a)), other_(std::move(b)) {}
    Result<std::vector<uint8_t>> receive(std::chrono::milliseconds t) override {
      if (!swapped_ && lose_next_) {
        lose_next_ = false;
        return make_error(ErrorCode::kUnavailable, "test: cable pulled");
      }
      return swapped_ ? other_.receive(t) : InProcessTransport::receive(t);
    }
    Result<void> send(std::span<const uint8_t> f) override {
      return swapped_ ? other_.send(f) : InProcessTransport::send(f);
    }
    Result<void> reopen() override {
      swapped_ = true;
      return {};
    }
    bool lose_next_ = false;

   private:
    InProcessTransport other_;
    bool swapped_ = false;
  };
  auto t = std::make_unique<Swapping>(first, second);
  Swapping* tp = t.get();
  ProtocolOptions po;
  po.reopen_window = std::chrono::milliseconds(100);
  auto b = Board::connect(std::move(t), po);
  ASSERT_TRUE(b.has_value()) << b.error().message;
  tp->lose_next_ = true;
  auto r = (*b)->status();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("a different board answered (serial " +
                                   twin::Firmware::serial_for_seed(2) + ", expected " +
                                   twin::Firmware::serial_for_seed(1) + ")"),
            std::string::npos)
      << r.error().message;
}

TEST(LinkFaults, HundredRandomisedSchedulesLoseNothingAndNeverPulseTwice) {
  Totals t;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    run_schedule(seed, t);
    if (HasFatalFailure()) return;
  }
  const auto& l = t.link;
  std::printf(
      "100 schedules: requests dropped %u, corrupted %u; replies dropped %u, corrupted %u, "
      "duplicated %u, delayed %u; restarts %u (%u of them unplugs, links re-opened %llu); "
      "repeated batches %u\n"
      "program-verify ok %d (restarts met %d), failed %d; loop runs ok %d, failed %d\n",
      l.requests_dropped, l.requests_corrupted, l.replies_dropped, l.replies_corrupted,
      l.replies_duplicated, l.replies_delayed, l.restarts, l.unplugs,
      static_cast<unsigned long long>(t.reopens), l.pulse_batches_repeated, t.pv_ok, t.pv_restarts,
      t.pv_failed, t.loop_ok, t.loop_failed);
  // Every kind of fault happened, many times: the schedules exercise what they claim to.
  for (uint32_t n : {l.requests_dropped, l.requests_corrupted, l.replies_dropped,
                     l.replies_corrupted, l.replies_duplicated, l.replies_delayed}) {
    EXPECT_GT(n, 30u);
  }
  EXPECT_GT(l.restarts, 20u);
  EXPECT_GT(l.unplugs, 10u);
  // Each unplug cuts the link once; an unplug during the re-open's own INFO probe is one more
  // cut for the same re-open.
  EXPECT_LE(t.reopens, l.unplugs);
  EXPECT_GT(t.reopens, 10u);
  EXPECT_GT(t.pv_restarts, 0);
  EXPECT_EQ(l.pulse_batches_repeated, 0u);
  // Most operations get through; the rest fail with a clear error (checked per schedule).
  EXPECT_GE(t.pv_ok, 90);
  EXPECT_GE(t.loop_ok, 150);
}

}  // namespace
}  // namespace xbar
