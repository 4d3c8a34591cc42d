// The closed loop: LOOP_LOAD / LOOP_RUN on the twin against the host-stepped reference, the
// protocol rules of a run (blocks, BUSY, ABORT), and the step arithmetic.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "xbar/drivers/board.h"
#include "xbar/drivers/loop_runner.h"
#include "xbar/wire/loop_program.h"

namespace xbar {
namespace {

std::unique_ptr<Board> open(const std::string& uri) {
  auto b = Board::open(uri);
  EXPECT_TRUE(b.has_value()) << b.error().message;
  return std::move(*b);
}

// A program with 14 complex-like feedback pairs on shuffled rows/columns, 1 input, 2 outputs.
std::vector<wire::LoopProgram> programs(uint64_t seed, int arrays) {
  std::mt19937_64 rng(seed);
  std::vector<wire::LoopProgram> out;
  for (int a = 0; a < arrays; ++a) {
    std::vector<uint8_t> rows(64), cols(64);
    std::iota(rows.begin(), rows.end(), 0);
    std::iota(cols.begin(), cols.end(), 0);
    std::shuffle(rows.begin(), rows.end(), rng);
    std::shuffle(cols.begin(), cols.end(), rng);
    wire::LoopProgram p;
    p.array = static_cast<uint8_t>(a);
    p.gain_index = 1;
    p.clamp = 255;
    p.taps.push_back({rows[0], rows[1], 300, 8});
    for (int f = 0; f < 28; ++f) {
      p.routes.push_back({cols[static_cast<size_t>(2 * f)], cols[static_cast<size_t>(2 * f + 1)],
                          rows[static_cast<size_t>(2 + 2 * f)],
                          rows[static_cast<size_t>(3 + 2 * f)], 17925, 20});
    }
    p.outputs.push_back({cols[56], cols[57]});
    p.outputs.push_back({cols[58], cols[59]});
    out.push_back(p);
  }
  return out;
}

std::vector<int16_t> inputs(size_t steps, size_t taps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 3000);
  std::vector<int16_t> u(steps * taps);
  for (auto& x : u) x = static_cast<int16_t>(std::clamp(z(rng), -32767.0, 32767.0));
  return u;
}

TEST(LoopArithmetic, RoundingIsHalfAwayFromZero) {
  EXPECT_EQ(wire::rshift_round(5, 1), 3);    // 2.5 -> 3
  EXPECT_EQ(wire::rshift_round(-5, 1), -3);  // -2.5 -> -3
  EXPECT_EQ(wire::rshift_round(4, 1), 2);
  EXPECT_EQ(wire::rshift_round(7, 0), 7);
  EXPECT_EQ(wire::rshift_round(-1, 3), 0);  // -0.125 -> 0
}

TEST(Loop, FirmwareLoopEqualsHostSteppedOnEveryProfile) {
  for (const char* profile : {"ideal", "imssa", "typical", "harsh"}) {
    auto b = open(fmt::format("sim:profile={},seed=5,noise_seed=9", profile));
    // Give the arrays some content: program nothing, the as-manufactured state is enough to
    // exercise noise and saturation.
    const auto progs = programs(3, 3);
    auto max_block = b->loop_load(progs);
    ASSERT_TRUE(max_block.has_value()) << max_block.error().message;
    const size_t steps = 300;
    const auto u = inputs(steps, 3, 4);
    // Blocks of 128 steps: the run state carries over block boundaries.
    auto loop = run_loop(*b, progs, 128, u, steps, 77);
    ASSERT_TRUE(loop.has_value()) << loop.error().message;
    auto host = run_host_stepped(*b, progs, u, steps, 77);
    ASSERT_TRUE(host.has_value()) << host.error().message;
    EXPECT_EQ(loop->steps, steps);
    EXPECT_EQ(loop->outputs.size(), steps * 6);
    EXPECT_EQ(loop->outputs, host->outputs) << profile;
    EXPECT_EQ(loop->transactions, 3);                // ceil(301 / 128) blocks
    EXPECT_EQ(host->transactions, (steps + 1) * 3);  // one VMM per step and program
    // A different noise tag draws different noise on a noisy profile.
    auto other = run_loop(*b, progs, *max_block, u, steps, 78);
    ASSERT_TRUE(other.has_value());
    if (std::string(profile) != "ideal") {
      EXPECT_NE(other->outputs, loop->outputs) << profile;
    }
  }
}

TEST(Loop, RunRulesBusyAbortAndBlockOrder) {
  auto b = open("sim:profile=typical,seed=2");
  const auto progs = programs(1, 1);
  ASSERT_TRUE(b->loop_load(progs).has_value());
  wire::LoopRunRequest first;
  first.flags = wire::kLoopFirst;
  first.n_steps = 4;
  first.inputs.assign(4, 100);
  auto r = b->loop_run(first);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->run_open, 1);
  auto st = b->status();
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->loop_running);
  // While the run is open, other requests are refused with BUSY.
  auto read = b->read_array(0);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, ErrorCode::kBusy);
  EXPECT_NE(read.error().message.find("running a loop"), std::string::npos);
  // A block out of order is refused and leaves the run as it was.
  wire::LoopRunRequest next = first;
  next.flags = 0;
  next.block_index = 5;
  auto bad = b->loop_run(next);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("block_index = 5: expected 1"), std::string::npos)
      << bad.error().message;
  next.block_index = 1;
  ASSERT_TRUE(b->loop_run(next).has_value());
  // ABORT closes it; the next block is ABORTED; the board serves reads again.
  auto ab = b->abort();
  ASSERT_TRUE(ab.has_value());
  EXPECT_TRUE(*ab);
  next.block_index = 2;
  auto after = b->loop_run(next);
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().code, ErrorCode::kCancelled);
  EXPECT_TRUE(b->read_array(0).has_value());
  EXPECT_FALSE(*b->abort());
}

// Runs the step-major input codes `u` as one run of one block; returns its output codes.
std::vector<int32_t> one_run(Board& b, const std::vector<int16_t>& u, uint16_t steps,
                             uint32_t tag) {
  wire::LoopRunRequest q;
  q.flags = wire::kLoopFirst | wire::kLoopLast;
  q.n_steps = steps;
  q.noise_tag = tag;
  q.inputs = u;
  auto r = b.loop_run(q);
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? r->outputs : std::vector<int32_t>{};
}

TEST(Loop, SwitchedRunsEqualOneRunWhileAnotherProgramSetTakesTurns) {
  // Typical profile (read noise, relaxation): a 300-step run cut into 7-step runs that each
  // resume the state and step count of the previous one (RESUME/SNAPSHOT), with another
  // program set loaded and run between every two of them, gives the one run's outputs bit for
  // bit: the context switch loses nothing and the noise stays keyed by the run's own steps.
  auto b = open("sim:profile=typical,seed=5");
  ASSERT_TRUE(b->info().has_loop_resume);
  const auto mine = programs(3, 2), other = programs(9, 3);
  const uint16_t steps = 300;
  const auto u = inputs(steps, 2, 11);
  ASSERT_TRUE(b->loop_load(mine).has_value());
  const std::vector<int32_t> whole = one_run(*b, u, steps, 42);
  ASSERT_EQ(whole.size(), size_t{steps} * 2 * 2);

  std::vector<int32_t> pieces;
  std::vector<int16_t> state;
  uint32_t next = 0;
  int loads = 0;
  for (uint16_t start = 0; start < steps; start += 7) {
    const uint16_t k = std::min<uint16_t>(7, steps - start);
    auto l = b->ensure_loop_loaded(mine);
    ASSERT_TRUE(l.has_value());
    wire::LoopRunRequest q;
    q.flags = wire::kLoopFirst | wire::kLoopLast | wire::kLoopSnapshot |
              (start > 0 ? wire::kLoopResume : 0);
    q.n_steps = k;
    q.noise_tag = 42;
    q.start_step = next;
    q.state = state;
    q.inputs.assign(u.begin() + start * 2, u.begin() + (start + k) * 2);
    auto r = b->loop_run(q);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(r->run_open, 0);
    EXPECT_EQ(r->next_step, uint32_t{start} + k);
    ASSERT_EQ(r->state.size(), 2u * 28);
    state = r->state;
    next = r->next_step;
    pieces.insert(pieces.end(), r->outputs.begin(), r->outputs.end());
    // Someone else's turn: other programs, another run, another noise tag.
    ASSERT_TRUE(b->ensure_loop_loaded(other).has_value());
    ++loads;
    one_run(*b, inputs(5, 3, start), 5, 7);
  }
  EXPECT_EQ(loads, 43);
  EXPECT_EQ(pieces, whole);
  // Without the state the same pieces differ (the test can fail).
  ASSERT_TRUE(b->loop_load(mine).has_value());
  const auto restart = one_run(*b, std::vector<int16_t>(u.begin() + 14, u.begin() + 28), 7, 42);
  EXPECT_NE(restart, std::vector<int32_t>(whole.begin() + 28, whole.begin() + 56));
}

TEST(LoopCodec, ResumeAndSnapshotRoundTripAndTruncationIsRejected) {
  wire::LoopRunRequest q;
  q.flags = wire::kLoopFirst | wire::kLoopResume | wire::kLoopSnapshot;
  q.n_steps = 2;
  q.noise_tag = 9;
  q.start_step = 123456;
  q.state = {-255, 0, 17};
  q.inputs = {1, -2, 3, -4};
  const auto bytes = q.encode();
  EXPECT_EQ(bytes.size(), 16u + 8 + 6 + 8);
  auto d = wire::decode_loop_run_request(bytes);
  ASSERT_TRUE(d.has_value()) << d.error();
  EXPECT_EQ(d->start_step, 123456u);
  EXPECT_EQ(d->state, q.state);
  EXPECT_EQ(d->inputs, q.inputs);
  for (size_t cut = 16; cut < 30; ++cut) {  // header, extension or state cut short
    auto t = wire::decode_loop_run_request(std::span(bytes).first(cut));
    EXPECT_FALSE(t.has_value()) << cut;
  }
  wire::LoopRunReply r;
  r.flags = wire::kLoopLast | wire::kLoopSnapshot;
  r.n_steps = 1;
  r.next_step = 77;
  r.state = {5, -5};
  r.outputs = {100000, -3};
  auto rd = wire::decode_loop_run_reply(r.encode());
  ASSERT_TRUE(rd.has_value()) << rd.error();
  EXPECT_EQ(rd->next_step, 77u);
  EXPECT_EQ(rd->state, r.state);
  EXPECT_EQ(rd->outputs, r.outputs);
  // Without the SNAPSHOT flag the same bytes are not a snapshot: the layout is the flag's.
  r.flags = wire::kLoopLast;
  rd = wire::decode_loop_run_reply(r.encode());
  ASSERT_TRUE(rd.has_value());
  EXPECT_TRUE(rd->state.empty());
}

TEST(Loop, ResumeIsCheckedAndNamesTheField) {
  auto b = open("sim:profile=typical,seed=2");
  const auto progs = programs(1, 2);
  ASSERT_TRUE(b->loop_load(progs).has_value());
  wire::LoopRunRequest q;
  q.flags = wire::kLoopFirst | wire::kLoopResume;
  q.n_steps = 2;
  q.inputs.assign(4, 10);
  q.state.assign(55, 0);  // the two programs have 56 routes
  auto r = b->loop_run(q);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("n_state = 55: the loaded programs have 56 state codes"),
            std::string::npos)
      << r.error().message;
  q.state.assign(56, 0);
  q.state[30] = 256;  // clamp is 255
  r = b->loop_run(q);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("state[30] = 256: allowed -255..255"), std::string::npos)
      << r.error().message;
  q.state[30] = 0;
  q.start_step = wire::kMaxLoopRunSteps - 1;
  r = b->loop_run(q);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("at most"), std::string::npos) << r.error().message;
  // RESUME needs FIRST.
  q.flags = wire::kLoopResume;
  q.start_step = 0;
  r = b->loop_run(q);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("only allowed on a FIRST block"), std::string::npos);
  // None of them opened a run.
  auto st = b->status();
  ASSERT_TRUE(st.has_value());
  EXPECT_FALSE(st->loop_running);
  // A valid resume of an all-zero state equals a fresh run at the same step.
  q.flags = wire::kLoopFirst | wire::kLoopLast | wire::kLoopResume;
  r = b->loop_run(q);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->outputs, one_run(*b, q.inputs, 2, 0));
}

// Device fixes (flags bit 1): the firmware and the host-stepped reference take the same
// charge out of the same columns, and a fix changes the outputs by what it says.
TEST(Loop, DeviceFixesAreAppliedAlikeOnTheBoardAndTheHost) {
  auto b = open("sim:profile=typical,seed=5,noise_seed=9");
  auto progs = programs(3, 2);
  auto plain = progs;
  for (auto& p : progs) {
    p.flags |= wire::kLoopDeviceFixes;
    // Every route's positive column loses 40 codes per unit of its first state row, and an
    // output column gains some: fixes on used rows and columns, and one on an unused row.
    for (size_t f = 0; f < p.routes.size(); f += 3)
      p.fixes.push_back({p.routes[f].row_pos, p.routes[f].col_pos, -40, 0});
    p.fixes.push_back({p.taps[0].row_pos, p.outputs[0].col_pos, -1200, 4});
    p.fixes.push_back({p.taps[0].row_neg, p.outputs[1].col_neg, 77, 0});
  }
  // The codec keeps them, with the flag.
  auto enc = wire::decode_loop_load_request(wire::LoopLoadRequest{progs}.encode());
  ASSERT_TRUE(enc.has_value()) << enc.error();
  EXPECT_EQ(enc->programs, progs);
  auto max_block = b->loop_load(progs);
  ASSERT_TRUE(max_block.has_value()) << max_block.error().message;
  const size_t steps = 200;
  const auto u = inputs(steps, 2, 4);
  auto loop = run_loop(*b, progs, 64, u, steps, 31);
  ASSERT_TRUE(loop.has_value()) << loop.error().message;
  auto host = run_host_stepped(*b, progs, u, steps, 31);
  ASSERT_TRUE(host.has_value()) << host.error().message;
  EXPECT_EQ(loop->outputs, host->outputs);
  ASSERT_TRUE(b->loop_load(plain).has_value());
  auto without = run_loop(*b, plain, 64, u, steps, 31);
  ASSERT_TRUE(without.has_value());
  EXPECT_NE(without->outputs, loop->outputs) << "the fixes changed nothing";
}

TEST(Loop, DeviceFixesAreCheckedAndNameTheField) {
  auto b = open("sim:profile=ideal");
  auto progs = programs(1, 1);
  progs[0].fixes.push_back({3, 4, 100, 2});
  auto r = b->loop_load(progs);  // without the flag the fixes are not even sent
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("1 fixes without flag bit 1 (DEVICE_FIXES)"), std::string::npos)
      << r.error().message;
  progs[0].flags |= wire::kLoopDeviceFixes;
  progs[0].fixes[0].col = 64;
  r = b->loop_load(progs);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("fixes[0]: row 3, col 64: allowed 0..63, 0..63"),
            std::string::npos)
      << r.error().message;
  progs[0].fixes[0].col = 4;
  progs[0].fixes[0].shift = 32;
  r = b->loop_load(progs);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("fixes[0].shift = 32: allowed 0..31"), std::string::npos)
      << r.error().message;
  progs[0].fixes.assign(wire::kMaxLoopFixes + 1, {3, 4, 100, 2});
  r = b->loop_load(progs);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("n_fixes = 513: allowed 0..512"), std::string::npos)
      << r.error().message;
}

TEST(Loop, LoadIsCheckedAndNamesTheField) {
  auto b = open("sim:profile=ideal");
  auto progs = programs(1, 1);
  progs[0].routes[3].row_pos = progs[0].taps[0].row_pos;  // a row used twice
  auto r = b->loop_load(progs);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("routes[3].row_pos"), std::string::npos) << r.error().message;
  progs = programs(1, 1);
  progs[0].routes[0].shift = 40;
  r = b->loop_load(progs);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("routes[0].shift = 40: allowed 0..31"), std::string::npos);
}

}  // namespace
}  // namespace xbar
