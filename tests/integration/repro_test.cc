// Bit-reproducibility: the same seeds give the same codes, run after run, and over the
// in-process transport and a real xbar-fwsim process on a socket alike.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "process.h"
#include "xbar/drivers/board.h"

namespace xbar {
namespace {

using testing::Process;
using testing::TempDir;

// Everything the board returns for a fixed script of operations, as raw numbers.
struct Trace {
  std::vector<double> reads;
  std::vector<uint32_t> vmm;
  std::vector<double> truth;
  bool operator==(const Trace&) const = default;
};

Trace run_script(Board& b) {
  Trace t;
  PulseBatch set{wire::Polarity::kSet, {}};
  for (int r = 0; r < 64; r += 3) {
    for (int c = 0; c < 64; c += 5)
      set.devices.push_back({r, c, 2.0 + 0.01 * (r % 7), 0.8 + 0.01 * c, 200});
  }
  EXPECT_TRUE(b.pulse(1, set).has_value());
  PulseBatch reset{wire::Polarity::kReset, {{0, 0, 1.2, 5.2, 100}, {63, 63, 2.0, 5.0, 400}}};
  EXPECT_TRUE(b.pulse(1, reset).has_value());
  auto m = b.read_array(1, {.gain_index = 2, .n_avg = 4});
  EXPECT_TRUE(m.has_value());
  t.reads.assign(m->g_uS.data(), m->g_uS.data() + m->g_uS.size());
  EXPECT_TRUE(b.wait_us(300000).has_value());
  std::vector<wire::Cell> cells = {{0, 0}, {3, 5}, {63, 63}};
  auto rc = b.read_cells(1, cells, {.gain_index = 3, .n_avg = 16});
  EXPECT_TRUE(rc.has_value());
  t.reads.insert(t.reads.end(), rc->begin(), rc->end());
  std::vector<uint8_t> x(64 * 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(i * 29 + 3);
  auto v = b.vmm(1, x, 0);
  EXPECT_TRUE(v.has_value());
  t.vmm = *v;
  auto g = b.sim_ground_truth(1);
  EXPECT_TRUE(g.has_value());
  t.truth.assign(g->data(), g->data() + g->size());
  return t;
}

TEST(Reproducibility, SameSeedsSameCodesAcrossRuns) {
  auto a = Board::open("sim:profile=typical,seed=42,noise_seed=9");
  auto b = Board::open("sim:profile=typical,seed=42,noise_seed=9");
  ASSERT_TRUE(a && b);
  const Trace ta = run_script(**a), tb = run_script(**b);
  EXPECT_EQ(ta, tb);
  // A different noise seed changes the draws (same chip, so the same faults).
  auto c = Board::open("sim:profile=typical,seed=42,noise_seed=10");
  ASSERT_TRUE(c);
  EXPECT_NE(run_script(**c).reads, ta.reads);
  EXPECT_EQ((*a)->sim_fault_map(2).value(), (*c)->sim_fault_map(2).value());
  // A different chip seed is a different chip.
  auto d = Board::open("sim:profile=typical,seed=43,noise_seed=9");
  ASSERT_TRUE(d);
  EXPECT_NE((*a)->sim_fault_map(2).value(), (*d)->sim_fault_map(2).value());
  EXPECT_NE((*a)->info().serial, (*d)->info().serial);
}

TEST(Reproducibility, InProcessAndSocketTransportsGiveIdenticalCodes) {
  TempDir dir;
  const auto sock = dir.path() / "fwsim.sock";
  Process fwsim({XBAR_FWSIM_PATH, "--profile", "typical", "--seed", "42", "--noise-seed", "9",
                 "--listen", "unix:" + sock.string()},
                dir.path() / "fwsim.log");
  ASSERT_TRUE(fwsim.started());
  ASSERT_TRUE(testing::eventually([&] { return std::filesystem::exists(sock); })) << fwsim.output();
  auto remote = Board::open("unix:" + sock.string());
  ASSERT_TRUE(remote.has_value()) << remote.error().message;
  auto local = Board::open("sim:profile=typical,seed=42,noise_seed=9");
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ((*remote)->info().serial, (*local)->info().serial);
  EXPECT_EQ((*remote)->info().backend, "unix");
  EXPECT_EQ(run_script(**remote), run_script(**local));

  // And over TCP (port chosen by the OS, published through --address-file).
  const auto addr_file = dir.path() / "addr";
  Process tcp({XBAR_FWSIM_PATH, "--seed", "42", "--noise-seed", "9", "--listen", "tcp:127.0.0.1:0",
               "--address-file", addr_file.string()},
              dir.path() / "tcp.log");
  ASSERT_TRUE(testing::eventually([&] { return !testing::read_file(addr_file).empty(); }));
  std::string addr = testing::read_file(addr_file);
  addr.erase(addr.find_last_not_of("\n") + 1);
  auto over_tcp = Board::open(addr);
  ASSERT_TRUE(over_tcp.has_value()) << over_tcp.error().message;
  auto local2 = Board::open("sim:profile=typical,seed=42,noise_seed=9");
  EXPECT_EQ(run_script(**over_tcp), run_script(**local2));
}

TEST(Reproducibility, SeveralClientsShareOneSerialisedBoard) {
  TempDir dir;
  const auto sock = dir.path() / "fwsim.sock";
  Process fwsim({XBAR_FWSIM_PATH, "--listen", "unix:" + sock.string()}, dir.path() / "fwsim.log");
  ASSERT_TRUE(testing::eventually([&] { return std::filesystem::exists(sock); }));
  constexpr int kClients = 4, kRounds = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto b = Board::open("unix:" + sock.string());
      if (!b) {
        ++failures;
        return;
      }
      for (int k = 0; k < kRounds; ++k) {
        // Each client programs its own row; every reply must belong to its own request.
        PulseBatch p{wire::Polarity::kSet, {{t, k % 64, 2.0, 1.0, 40}}};
        auto r = (*b)->pulse(0, p);
        auto m = (*b)->read_cells(0, std::vector<wire::Cell>{{uint8_t(t), uint8_t(k % 64)}});
        if (!r || r->n_pulsed != 1 || !m || m->size() != 1) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto b = Board::open("unix:" + sock.string());
  ASSERT_TRUE(b.has_value());
  auto s = (*b)->status();
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->pulses_applied, uint64_t{kClients} * kRounds);
  // INFO per client at open, a PULSE_BATCH and a READ per round, this INFO and STATUS.
  EXPECT_EQ(s->ops_executed, uint64_t{kClients} * (1 + 2 * kRounds) + 2);
}

TEST(Reproducibility, SocketErrorsAreClear) {
  TempDir dir;
  auto b = Board::open("unix:" + (dir.path() / "nobody.sock").string());
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(b.error().message.find("is xbar-fwsim running there?"), std::string::npos)
      << b.error().message;
  auto bad = Board::open("sim:profil=typical");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("unknown key 'profil'"), std::string::npos);
  auto seed = Board::open("sim:seed=abc");
  ASSERT_FALSE(seed.has_value());
  EXPECT_NE(seed.error().message.find("seed = 'abc'"), std::string::npos);
}

}  // namespace
}  // namespace xbar
