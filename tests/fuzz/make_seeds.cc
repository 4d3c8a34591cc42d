// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/), with the product's
// own encoders where there are some: protocol frames and payloads (protocol/), request
// messages (protobuf), sound files (libsndfile), plus copies of the repository's example
// kernels, models and configurations. The corpora are committed; rerun after a format change:
//
//   build-fuzz/tests/fuzz/make_seeds . tests/fuzz/corpus      (from the repository root)
//
// Every seed is small (a few KB at most) and named after what it exercises.
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <sndfile.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <vector>

#include "xbar/v1/kernels.pb.h"
#include "xbar/v1/models.pb.h"
#include "xbar/wire/frame.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

namespace fs = std::filesystem;
using namespace xbar::wire;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path g_src, g_out;

void write(const std::string& target, const std::string& name, const void* data, size_t n) {
  const fs::path dir = g_out / target;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!f) {
    std::cerr << "cannot write " << (dir / name) << "\n";
    std::exit(1);
  }
}
void write(const std::string& target, const std::string& name, const Bytes& b) {
  write(target, name, b.data(), b.size());
}
void write(const std::string& target, const std::string& name, const std::string& s) {
  write(target, name, s.data(), s.size());
}

std::string read_text(const std::string& rel) {
  std::ifstream f(g_src / rel, std::ios::binary);
  if (!f) {
    std::cerr << "cannot read " << (g_src / rel) << "\n";
    std::exit(1);
  }
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Bytes u8(uint8_t v) { return {v}; }
Bytes u16(uint16_t v) { return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)}; }
Bytes u32(uint32_t v) {
  return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 24)};
}

// DAC code of a voltage on the twin's 16-bit -10..10 V DACs.
uint16_t dac(double v) { return static_cast<uint16_t>(std::lround((v + 10.0) / 20.0 * 65535)); }

// ---- requests and replies of every opcode (typical geometry unless given) ----

Bytes read_whole(uint8_t array, uint8_t n_avg) {
  ReadRequest q;
  q.array = array;
  q.gain_index = 2;
  q.n_avg = n_avg;
  return q.encode();
}
Bytes read_cells(uint8_t array, std::vector<Cell> cells, uint16_t settle_ms = 0) {
  ReadRequest q;
  q.array = array;
  q.mode = ReadMode::kCells;
  q.n_avg = 4;
  q.settle_ms = settle_ms;
  q.cells = std::move(cells);
  return q.encode();
}
Bytes pulse_batch(int rows, int cols, Polarity pol, std::vector<int> devices, int resets = 0) {
  PulseBatchRequest q;
  q.array = 0;
  q.polarity = pol;
  q.mask.assign((static_cast<size_t>(rows) * cols + 7) / 8, 0);
  if (pol == Polarity::kMixed) q.reset_mask = q.mask;
  for (size_t k = 0; k < devices.size(); ++k) {  // the first `resets` devices get a RESET
    mask_set(q.mask, static_cast<size_t>(devices[k]));
    if (pol == Polarity::kMixed && static_cast<int>(k) < resets) {
      mask_set(q.reset_mask, static_cast<size_t>(devices[k]));
    }
  }
  // One code per selected device, in row-major device order.
  for (size_t i = 0; i < static_cast<size_t>(rows) * cols; ++i) {
    if (!mask_test(q.mask, i)) continue;
    const bool reset =
        pol == Polarity::kReset || (pol == Polarity::kMixed && mask_test(q.reset_mask, i));
    q.codes.push_back(reset ? PulseCodes{dac(1.5), dac(5.2), 10}
                            : PulseCodes{dac(2.5), dac(1.0), 50});
  }
  return q.encode();
}
Bytes vmm(int rows, uint16_t n, bool tag) {
  VmmRequest q;
  q.array = 0;
  q.gain_index = 2;
  q.n_vectors = n;
  for (int v = 0; v < n; ++v) {
    for (int r = 0; r < rows; ++r)
      q.inputs.push_back(static_cast<uint8_t>((r * 37 + v * 11) % 256));
  }
  q.has_noise_tag = tag;
  q.noise_op = (uint64_t{1} << 63) | 5;
  q.first_vector = 3;
  return q.encode();
}
LoopProgram program(uint8_t array, int n_states) {  // an S4D-shaped program (docs/kernels.md)
  LoopProgram p;
  p.array = array;
  p.gain_index = 1;
  p.clamp = 255;
  p.taps = {LoopTap{0, 1, 1200, 12}};
  for (int s = 0; s < n_states; ++s) {
    for (int part = 0; part < 2; ++part) {
      const auto c = static_cast<uint8_t>(4 * s + 2 * part);
      const auto r = static_cast<uint8_t>(4 + 4 * s + 2 * part);
      p.routes.push_back(
          LoopRoute{c, static_cast<uint8_t>(c + 1), r, static_cast<uint8_t>(r + 1), -900, 14});
    }
  }
  const auto o = static_cast<uint8_t>(4 * n_states);
  p.outputs = {LoopOutput{o, static_cast<uint8_t>(o + 1)}};
  return p;
}
Bytes loop_run(uint8_t flags, uint16_t k, uint32_t block, size_t n_in, size_t n_state = 0) {
  LoopRunRequest q;
  q.flags = flags;
  q.n_steps = k;
  q.block_index = block;
  q.noise_tag = 99;
  if (flags & kLoopResume) {
    q.start_step = 16;
    for (size_t i = 0; i < n_state; ++i) q.state.push_back(static_cast<int16_t>(i * 7 % 50 - 25));
  }
  for (size_t i = 0; i < k * n_in; ++i) q.inputs.push_back(static_cast<int16_t>(i * 997 % 6000));
  return q.encode();
}
Bytes wait_req(uint32_t us) { return WaitRequest{us}.encode(); }
Bytes sim_clock(ClockOp op, uint64_t ns) { return SimClockRequest{op, ns}.encode(); }
Bytes inject(uint8_t row, uint8_t col, FaultKind k, float g) {
  return SimInjectFaultRequest{0, row, col, k, g}.encode();
}

// ---- wire_codec: selector byte + case bytes ----

void wire_codec_seeds() {
  const std::string t = "wire_codec";
  ErrorReply err{BoardErrorCode::kOutOfRange, "READ.array = 5: allowed 0..2"};
  InfoReply info;
  info.serial = "XS00000000000007";
  info.firmware_version = "twin-0.3.0";
  info.capabilities = 7;
  info.tia_gains_ohm = {1000, 5000, 30000, 200000, 1000000};
  write(t, "frame-info-request", cat({u8(0), encode_frame(Opcode::kInfo, 0, 1, {})}));
  write(t, "frame-read-request", cat({u8(0), encode_frame(Opcode::kRead, 0, 2, read_whole(0, 1))}));
  write(t, "frame-error-reply", cat({u8(0), encode_frame(Opcode::kRead, 3, 2, err.encode())}));
  write(t, "frame-error-reply-unknown-opcode",
        cat({u8(24),
             encode_frame(static_cast<Opcode>(0x44), 3, 9,
                          ErrorReply{BoardErrorCode::kUnknownOpcode, "opcode 0x44"}.encode())}));
  write(t, "frame-info-reply", cat({u8(25), encode_frame(Opcode::kInfo, 1, 1, info.encode())}));
  write(t, "frame-vmm", cat({u8(26), encode_frame(Opcode::kVmm, 0, 77, vmm(64, 1, true))}));
  {
    auto f = encode_frame(Opcode::kStatus, 0, 5, {});
    f[16] ^= 1;  // CRC mismatch
    write(t, "frame-bad-crc", cat({u8(27), f}));
    auto g = encode_frame(Opcode::kWait, 0, 6, wait_req(10));
    g.pop_back();  // truncated
    write(t, "frame-truncated", cat({u8(28), g}));
  }
  write(t, "encode-read", cat({u8(1), u8(3), u16(0), u32(0xDEADBEEF), read_whole(1, 2)}));
  write(t, "encode-unknown-error-reply", cat({u8(1), u8(0x44), u16(3), u32(7), err.encode()}));
  write(t, "error-reply", cat({u8(2), err.encode()}));
  write(t, "info-reply", cat({u8(3), info.encode()}));
  StatusReply st{BoardState::kLoopRunning, 4, 123456789, 42, 1000, 3};
  write(t, "status-reply", cat({u8(4), st.encode()}));
  write(t, "read-request-whole", cat({u8(5), read_whole(2, 64)}));
  write(t, "read-request-cells", cat({u8(5), read_cells(0, {{1, 2}, {63, 63}, {1, 2}}, 1000)}));
  ReadReply rr;
  rr.mode = ReadMode::kCells;
  rr.code_sums = {1, 2, 1023};
  write(t, "read-reply", cat({u8(6), rr.encode()}));
  write(t, "pulse-batch-set",
        cat({u8(7), u8(64), u8(64), pulse_batch(64, 64, Polarity::kSet, {0, 65, 4095})}));
  write(t, "pulse-batch-mixed-5x12",
        cat({u8(7), u8(5), u8(12), pulse_batch(5, 12, Polarity::kMixed, {3, 17, 59}, 1)}));
  write(t, "pulse-batch-reply", cat({u8(8), PulseBatchReply{3, 18}.encode()}));
  write(t, "vmm-request-tagged", cat({u8(9), u8(8), vmm(8, 2, true)}));
  write(t, "vmm-request", cat({u8(9), u8(64), vmm(64, 1, false)}));
  VmmReply vr;
  vr.n_vectors = 1;
  vr.acc.assign(8, 777);
  write(t, "vmm-reply", cat({u8(10), u8(8), vr.encode()}));
  write(t, "abort-reply", cat({u8(11), AbortReply{1}.encode()}));
  write(t, "wait-request", cat({u8(12), wait_req(1500)}));
  write(t, "wait-reply", cat({u8(13), WaitReply{99}.encode()}));
  write(t, "array-request", cat({u8(14), ArrayRequest{2}.encode()}));
  SimFaultMapReply fm;
  fm.faults = {FaultKind::kNone, FaultKind::kStuckHigh, FaultKind::kStuckLow, FaultKind::kSlow};
  write(t, "sim-fault-map-reply", cat({u8(15), u8(2), u8(2), fm.encode()}));
  SimGroundTruthReply gt;
  gt.g_uS = {1.5f, 300.0f, NAN, 0.0f};
  write(t, "sim-ground-truth-reply", cat({u8(16), u8(2), u8(2), gt.encode()}));
  write(t, "sim-inject-fault", cat({u8(17), inject(3, 4, FaultKind::kStuckHigh, NAN)}));
  write(t, "sim-clock-request", cat({u8(18), sim_clock(ClockOp::kAdvance, 5'000'000)}));
  write(t, "sim-clock-reply", cat({u8(19), SimClockReply{7}.encode()}));
  LoopLoadRequest ll{{program(0, 2), program(2, 14)}};
  write(t, "loop-load-s4d", cat({u8(20), u8(2), u8(64), u8(64), u8(4), ll.encode()}));
  write(t, "loop-load-reply", cat({u8(21), LoopLoadReply{4096}.encode()}));
  write(t, "loop-run-first", cat({u8(22), loop_run(kLoopFirst, 4, 0, 2)}));
  write(t, "loop-run-resume",
        cat({u8(22), loop_run(kLoopFirst | kLoopResume | kLoopSnapshot, 2, 0, 2, 32)}));
  LoopRunReply lr;
  lr.flags = kLoopSnapshot | kLoopLast;
  lr.n_steps = 2;
  lr.next_step = 18;
  lr.state = {1, -2, 3, -4};
  lr.outputs = {100, -100, 5, 6};
  write(t, "loop-run-reply-snapshot", cat({u8(23), lr.encode()}));
  SimLinkRequest link{LinkOp::kSet, {100, 200, 300, 400, 500, 600, 700, 800, 42, 150}};
  write(t, "sim-link-request", cat({u8(24), link.encode()}));
  SimLinkReply lrep;
  lrep.faults = link.faults;
  lrep.replies_dropped = 3;
  lrep.restarts = 1;
  write(t, "sim-link-reply", cat({u8(25), lrep.encode()}));
  write(t, "frame-sim-link", cat({u8(29), encode_frame(Opcode::kSimLink, 0, 5, link.encode())}));
}

// ---- firmware: variant byte + records (u8 kind, u16 len, body) ----

struct Script {
  Bytes b;
  explicit Script(uint8_t variant) : b{variant} {}
  // mode 1: (op, flags, seq, payload) encoded by the harness.
  Script& req(int session, Opcode op, uint32_t seq, const Bytes& payload, int mode = 1,
              uint8_t flags = 0) {
    const Bytes body = cat({u8(static_cast<uint8_t>(op)), u8(flags), u32(seq), payload});
    b.push_back(static_cast<uint8_t>(session | mode << 2));
    auto len = u16(static_cast<uint16_t>(body.size()));
    b.insert(b.end(), len.begin(), len.end());
    b.insert(b.end(), body.begin(), body.end());
    return *this;
  }
  Script& raw(int session, const Bytes& frame) {
    b.push_back(static_cast<uint8_t>(session));
    auto len = u16(static_cast<uint16_t>(frame.size()));
    b.insert(b.end(), len.begin(), len.end());
    b.insert(b.end(), frame.begin(), frame.end());
    return *this;
  }
};

void firmware_seeds() {
  const std::string t = "firmware";
  // Variant 0: 2 arrays of 8x8; 1: 3 of 5x12 (per-device VMM noise); 2: 1 of 16x4 (imssa, no
  // read noise, no relaxation); 3: the board's 3 of 64x64.
  write(t, "info-status", Script(0).req(0, Opcode::kInfo, 1, {}).req(0, Opcode::kStatus, 2, {}).b);
  write(t, "read-whole-and-cells",
        Script(0)
            .req(0, Opcode::kRead, 10, read_whole(1, 4))
            .req(0, Opcode::kRead, 11, read_cells(0, {{0, 0}, {7, 7}, {0, 0}}, 20))
            .req(0, Opcode::kStatus, 12, {})
            .b);
  write(t, "program-then-read",
        Script(0)
            .req(0, Opcode::kPulseBatch, 20, pulse_batch(8, 8, Polarity::kSet, {0, 9, 63}))
            .req(0, Opcode::kPulseBatch, 21, pulse_batch(8, 8, Polarity::kMixed, {1, 2, 3}, 2))
            .req(0, Opcode::kPulseBatch, 22, pulse_batch(8, 8, Polarity::kReset, {5}))
            .req(0, Opcode::kRead, 23, read_whole(0, 2))
            .req(0, Opcode::kSimGroundTruth, 24, ArrayRequest{0}.encode())
            .b);
  write(t, "vmm",
        Script(0)
            .req(0, Opcode::kVmm, 30, vmm(8, 3, false))
            .req(0, Opcode::kVmm, 31, vmm(8, 1, true))
            .b);
  write(t, "clock-wait-status",
        Script(0)
            .req(0, Opcode::kWait, 40, wait_req(250'000))
            .req(0, Opcode::kSimClock, 41, sim_clock(ClockOp::kAdvance, 3'000'000'000))
            .req(0, Opcode::kSimClock, 42, sim_clock(ClockOp::kQuery, 0))
            .req(0, Opcode::kStatus, 43, {})
            .b);
  write(t, "sim-faults",
        Script(0)
            .req(0, Opcode::kSimFaultMap, 50, ArrayRequest{1}.encode())
            .req(0, Opcode::kSimInjectFault, 51, inject(2, 3, FaultKind::kStuckHigh, 450.0f))
            .req(0, Opcode::kSimInjectFault, 52, inject(2, 4, FaultKind::kStuckLow, NAN))
            .req(0, Opcode::kRead, 53, read_cells(0, {{2, 3}, {2, 4}}))
            .req(0, Opcode::kSimFaultMap, 54, ArrayRequest{0}.encode())
            .req(0, Opcode::kSimLink, 55,
                 SimLinkRequest{LinkOp::kSet, {0, 0, 0, 0, 0, 0, 65535, 0, 7}}.encode())
            .req(0, Opcode::kSimLink, 56, SimLinkRequest{}.encode())
            .req(0, Opcode::kPulseBatch, 57, pulse_batch(8, 8, Polarity::kSet, {4}), 2, 4)
            .b);
  {
    LoopLoadRequest ll{{program(0, 1), program(1, 1)}};
    write(t, "loop-run-two-blocks",
          Script(0)
              .req(0, Opcode::kLoopLoad, 60, ll.encode())
              .req(0, Opcode::kLoopRun, 61, loop_run(kLoopFirst, 8, 0, 2))
              .req(0, Opcode::kStatus, 62, {})
              .req(0, Opcode::kLoopRun, 63, loop_run(kLoopLast, 8, 1, 2))
              .req(0, Opcode::kStatus, 64, {})
              .b);
    write(
        t, "loop-run-snapshot-resume",
        Script(0)
            .req(0, Opcode::kLoopLoad, 70, ll.encode())
            .req(0, Opcode::kLoopRun, 71, loop_run(kLoopFirst | kLoopLast | kLoopSnapshot, 4, 0, 2))
            .req(1, Opcode::kVmm, 72, vmm(8, 1, false))
            .req(0, Opcode::kLoopRun, 73,
                 loop_run(kLoopFirst | kLoopResume | kLoopLast | kLoopSnapshot, 4, 0, 2, 4))
            .b);
    write(t, "loop-busy-abort",
          Script(0)
              .req(0, Opcode::kLoopLoad, 80, ll.encode())
              .req(0, Opcode::kLoopRun, 81, loop_run(kLoopFirst, 2, 0, 2))
              .req(1, Opcode::kRead, 82, read_whole(0, 1))
              .req(1, Opcode::kStatus, 83, {})
              .req(1, Opcode::kLoopRun, 84, loop_run(0, 2, 1, 2))
              .req(1, Opcode::kAbort, 85, {})
              .req(0, Opcode::kLoopRun, 86, loop_run(0, 2, 1, 2))
              .req(0, Opcode::kStatus, 87, {})
              .b);
  }
  write(t, "retry-and-seq-reuse",
        Script(0)
            .req(0, Opcode::kPulseBatch, 90, pulse_batch(8, 8, Polarity::kSet, {4}), 2)
            .req(0, Opcode::kRead, 90, read_whole(0, 1))
            .req(1, Opcode::kRead, 90, read_whole(0, 1))
            .req(0, Opcode::kStatus, 91, {}, 2)
            .b);
  {
    Script s(0);
    for (uint32_t i = 0; i < 10; ++i) s.req(0, Opcode::kWait, 100 + i, wait_req(i));
    s.req(0, Opcode::kWait, 100, wait_req(0)).req(0, Opcode::kStatus, 111, {});
    write(t, "cache-eviction", s.b);
  }
  write(t, "frame-errors",
        Script(0)
            .raw(0, {'X', 'B', 'A', 'R', 1, 2})
            .req(0, Opcode::kStatus, 120, {}, 1, 1)  // REPLY bit on a request
            .req(0, static_cast<Opcode>(0x44), 121, {})
            .req(0, Opcode::kRead, 122, read_whole(0, 1), 3)  // one bit flipped
            .req(0, Opcode::kWait, 123, wait_req(20'000'000))
            .req(0, Opcode::kInfo, 124, {1})
            .req(0, Opcode::kStatus, 125, {})
            .b);
  write(t, "geometry-5x12",
        Script(1)
            .req(0, Opcode::kInfo, 1, {})
            .req(0, Opcode::kPulseBatch, 2, pulse_batch(5, 12, Polarity::kMixed, {0, 13, 59}, 1))
            .req(0, Opcode::kVmm, 3, vmm(5, 2, false))
            .req(0, Opcode::kRead, 4, read_whole(2, 3))
            .b);
  write(t, "geometry-16x4-imssa",
        Script(2)
            .req(0, Opcode::kSimFaultMap, 1, ArrayRequest{0}.encode())
            .req(0, Opcode::kPulseBatch, 2, pulse_batch(16, 4, Polarity::kSet, {0, 63}))
            .req(0, Opcode::kRead, 3, read_whole(0, 1))
            .b);
  {
    LoopLoadRequest ll{{program(0, 2), program(1, 14), program(2, 3)}};
    write(t, "board-64x64",
          Script(3)
              .req(0, Opcode::kInfo, 1, {})
              .req(0, Opcode::kRead, 2, read_cells(1, {{0, 0}, {63, 63}}))
              .req(0, Opcode::kVmm, 3, vmm(64, 1, true))
              .req(0, Opcode::kPulseBatch, 4, pulse_batch(64, 64, Polarity::kSet, {0, 4095}))
              .req(0, Opcode::kLoopLoad, 5, ll.encode())
              .req(0, Opcode::kLoopRun, 6, loop_run(kLoopFirst | kLoopLast, 4, 0, 3))
              .b);
  }
}

// ---- kernel, model and gRPC validator seeds ----

template <typename Msg>
Msg from_json(const std::string& text) {
  Msg m;
  if (!google::protobuf::util::JsonStringToMessage(text, &m).ok()) {
    std::cerr << "seed JSON does not parse\n";
    std::exit(1);
  }
  return m;
}

const char* kSmallKernels = R"({"kernels": [
  {"name": "discrete-1", "discrete": {"aBar": [{"re": 0.9, "im": 0.1}], "cBar": [{"re": 1, "im": -0.5}]}, "d": 0.25},
  {"name": "cont-q8", "continuous": {"a": [{"re": -0.5, "im": 0}, {"re": -0.1, "im": 6.28}], "logDt": -2.3,
   "c": [{"re": 0.5, "im": 0.5}, {"re": -1, "im": 0}]}, "quantization": {"bits": 8, "fScaleA": 8, "fScaleC": 0}}],
 "window": {"gMinUS": 10, "gMaxUS": 150}})";

const char* kSmallModel = R"({"name": "tiny-glu",
 "preprocessing": {"sampleRateHz": 16000, "downsample": 16, "targetLength": 32, "normalise": true},
 "encoder": {"inputs": 1, "outputs": 1, "weight": [2.0], "bias": [0.1]},
 "kernelSet": {"kernels": [{"name": "k", "discrete": {"aBar": [{"re": 0.95, "im": 0.2}], "cBar": [{"re": 0.3, "im": 0.1}]}}]},
 "mixing": {"inputs": 1, "outputs": 2, "weight": [1.5, -0.5], "bias": [0, 0]},
 "glu": true,
 "decoder": {"inputs": 1, "outputs": 3, "weight": [1, -1, 0.5], "bias": []},
 "classes": ["a", "b", "c"]})";

// Issue 18: the log-mel front end (4 bands per step), the encoder Linear(4 -> 1), and a fidelity
// clip of 3 steps x 4 bands.
const char* kSmallLogMelModel = R"({"name": "tiny-log-mel",
 "preprocessing": {"sampleRateHz": 8000, "downsample": 40, "targetLength": 0, "normalise": true,
  "logMel": {"bands": 4, "fftSize": 64, "lowHz": 100, "highHz": 3500, "rangeDb": 50}},
 "encoder": {"inputs": 4, "outputs": 1, "weight": [0.5, -0.25, 1.0, 0.75], "bias": [0.1]},
 "kernelSet": {"kernels": [{"name": "k", "discrete": {"aBar": [{"re": 0.95, "im": 0.2}], "cBar": [{"re": 0.3, "im": 0.1}]}}]},
 "mixing": {"inputs": 1, "outputs": 1, "weight": [1.5], "bias": [0]},
 "decoder": {"inputs": 1, "outputs": 2, "weight": [1, -1], "bias": []},
 "classes": ["a", "b"],
 "calibration": {"fidelityClips": [{"values": [0, 0.5, 1, 0.25, 0.1, 0.2, 0.3, 0.4, 1, 1, 0, 0]}]}})";

void kernel_model_seeds() {
  const std::vector<std::pair<std::string, std::string>> kernels = {
      {"example", read_text("configs/kernels/example.json")},
      {"example-2bit", read_text("configs/kernels/example-2bit.json")},
      {"small-mixed", kSmallKernels}};
  for (const auto& [name, text] : kernels) write("kernel", name + ".json", text);
  write("kernel", "unknown-field.json", std::string(R"({"kernels": [], "windows": {}})"));
  write(
      "kernel", "unstable.json",
      std::string(R"({"kernels": [{"discrete": {"aBar": [{"re": 1.0}], "cBar": [{"re": 1}]}}]})"));
  write("kernel", "bits-1.json",
        std::string(R"({"kernels": [{"discrete": {"aBar": [{"re": 0.5}], "cBar": [{"re": 1}]},
                        "quantization": {"bits": 1, "fScaleA": 1}}]})"));
  write("kernel", "nan-window.json",
        std::string(R"({"kernels": [{"discrete": {"aBar": [{"re": 0.5}], "cBar": [{"re": 1}]}}],
                        "window": {"gMinUS": "NaN", "gMaxUS": 100}})"));

  const std::vector<std::pair<std::string, std::string>> models = {
      {"example-model", read_text("models/example-model.json")},
      {"zero-one-2bit", read_text("models/reference/zero-one-2bit.json")},
      {"zero-one-5bit", read_text("models/reference/zero-one-5bit.json")},
      {"zero-one-float", read_text("models/reference/zero-one-float.json")},
      {"tiny-glu", kSmallModel},
      {"tiny-log-mel", kSmallLogMelModel}};
  for (const auto& [name, text] : models) write("model", name + ".json", text);
  write("model", "bad-shapes.json",
        std::string(R"({"encoder": {"inputs": 1, "outputs": 2, "weight": [1]},
                        "kernelSet": {"kernels": [{"discrete": {"aBar": [{"re": 0.5}], "cBar": [{"re": 1}]}}]}})"));

  // gRPC: selector byte (even: DeployKernelRequest, odd: DeployModelRequest) + wire format.
  for (const auto& [name, text] : kernels) {
    xbar::v1::DeployKernelRequest req;
    *req.mutable_kernel_set() = from_json<xbar::v1::KernelSet>(text);
    req.set_name(name);
    req.add_arrays(2);
    req.add_arrays(0);
    req.set_tol_us(2.5);
    req.set_max_rounds(40);
    req.set_max_nrmse(0.4);
    write("grpc_validators", "deploy-kernel-" + name,
          std::string(1, '\0') + req.SerializeAsString());
  }
  for (const auto& [name, text] : models) {
    xbar::v1::DeployModelRequest req;
    *req.mutable_model() = from_json<xbar::v1::Model>(text);
    req.mutable_options()->set_remap(xbar::v1::REMAP_NAIVE);
    write("grpc_validators", "deploy-model-" + name,
          std::string(1, '\1') + req.SerializeAsString());
  }
  // Selector 0x80: a ListDeployments page_token. These are what encode_page_token writes for
  // (1700000000123, dep-0123456789ab, chip XS0000000000000D), without and with
  // include_archived (deployment_pages_test pins the same texts).
  write("grpc_validators", "page-token",
        std::string("\x80AQAAAAGLz-VoexBYUzAwMDAwMDAwMDAwMDBEEGRlcC0wMTIzNDU2Nzg5YWKx_q3-"));
  write("grpc_validators", "page-token-archived",
        std::string("\x80AQEAAAGLz-VoexBYUzAwMDAwMDAwMDAwMDBEEGRlcC0wMTIzNDU2Nzg5YWLnt9-B"));
}

// ---- config ----

void config_seeds() {
  const std::string t = "config";
  write(t, "xbard.yaml", read_text("configs/xbard.yaml"));
  for (const char* p : {"typical", "imssa", "harsh", "ideal"}) {
    write(t, fmt::format("profile-{}.yaml", p),
          read_text(fmt::format("configs/profiles/{}.yaml", p)));
  }
  write(t, "socket-unix.yaml",
        std::string("listen: unix:/run/xbar/xbard.sock\nboard: {backend: socket, address: "
                    "'tcp:127.0.0.1:7700'}\nlog_level: debug\nmetrics_listen: '127.0.0.1:9464'\n"));
  write(
      t, "usb-security.yaml",
      std::string("board:\n  backend: usb\n  serial: XS0000000000000D\nsecurity:\n  token_file: "
                  "/etc/xbar/token\n  tls_cert: s.pem\n  tls_key: s.key\n  tls_client_ca: ca.pem\n"
                  "scheduling: {busy_policy: refuse, max_queue: 7, stream_idle_timeout_s: 0.5}\n"));
  write(t, "program-verify.yaml",
        std::string("program_verify:\n  tol_uS: 1e-3\n  max_rounds: 1000\n  verify_n_avg: 1\n"
                    "  target_min_uS: 0\n  target_max_uS: 10000\n  width_ns: 1e6\n"));
  write(t, "profile-small.yaml",
        std::string("name: small\ngeometry: {arrays: 1, rows: 8, cols: 8}\ntia: {gains_ohm: [1000, "
                    "30000]}\nfaults:\n  stuck_high: {count_per_array: [1, 3]}\n"
                    "read_noise: {enabled: false, vmm: per_device}\n"));
}

// ---- audio: options, rate selector, u16 downsample, u16 target_length, file bytes ----

// Writes a clip with libsndfile into memory (sf_open_virtual).
struct MemFile {
  Bytes data;
  sf_count_t pos = 0;
};
sf_count_t vf_len(void* u) {
  return static_cast<sf_count_t>(static_cast<MemFile*>(u)->data.size());
}
sf_count_t vf_seek(sf_count_t off, int whence, void* u) {
  auto* m = static_cast<MemFile*>(u);
  const sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : vf_len(u);
  m->pos = base + off;
  return m->pos;
}
sf_count_t vf_read(void* ptr, sf_count_t n, void* u) {
  auto* m = static_cast<MemFile*>(u);
  const sf_count_t avail = std::max<sf_count_t>(0, vf_len(u) - m->pos);
  n = std::min(n, avail);
  std::memcpy(ptr, m->data.data() + m->pos, static_cast<size_t>(n));
  m->pos += n;
  return n;
}
sf_count_t vf_write(const void* ptr, sf_count_t n, void* u) {
  auto* m = static_cast<MemFile*>(u);
  const auto end = static_cast<size_t>(m->pos + n);
  if (m->data.size() < end) m->data.resize(end);
  std::memcpy(m->data.data() + m->pos, ptr, static_cast<size_t>(n));
  m->pos += n;
  return n;
}
sf_count_t vf_tell(void* u) { return static_cast<MemFile*>(u)->pos; }

Bytes sound(int format, int rate, int channels, int frames) {
  MemFile m;
  SF_VIRTUAL_IO io{vf_len, vf_seek, vf_read, vf_write, vf_tell};
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open_virtual(&io, SFM_WRITE, &info, &m);
  if (!f) {
    std::cerr << "libsndfile cannot write format " << std::hex << format << ": "
              << sf_strerror(nullptr) << "\n";
    std::exit(1);
  }
  std::vector<float> x(static_cast<size_t>(frames) * channels);
  for (int i = 0; i < frames; ++i) {
    for (int c = 0; c < channels; ++c) {
      x[static_cast<size_t>(i * channels + c)] =
          static_cast<float>(0.6 * std::sin(0.05 * i * (c + 1)) * std::exp(-0.002 * i));
    }
  }
  sf_writef_float(f, x.data(), frames);
  sf_close(f);
  return m.data;
}

Bytes audio_prefix(uint8_t options, uint8_t rate_sel, uint16_t ds, uint16_t target) {
  return cat({u8(options), u8(rate_sel), u16(ds), u16(target)});
}

void audio_seeds() {
  const std::string t = "audio";
  // rate selectors: 0 1000, 1 8000, 2 16000, 3 22050, 4 44100, 5 48000, 6 96000, 7 384000
  write(t, "wav-pcm16-16k",
        cat({audio_prefix(1, 2, 15, 1), sound(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, 400)}));
  write(t, "wav-float-stereo-48k-resample",
        cat({audio_prefix(1, 2, 63, 1), sound(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 48000, 2, 300)}));
  write(t, "wav-u8-8k-no-normalise",
        cat({audio_prefix(0, 1, 7, 1), sound(SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 8000, 1, 200)}));
  write(t, "wav-pcm24-pad",
        cat({audio_prefix(1, 5, 63, 40), sound(SF_FORMAT_WAV | SF_FORMAT_PCM_24, 48000, 1, 500)}));
  write(t, "flac-22050",
        cat({audio_prefix(1, 3, 31, 1), sound(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, 600)}));
  write(t, "ogg-vorbis-44100",
        cat({audio_prefix(1, 4, 63, 1), sound(SF_FORMAT_OGG | SF_FORMAT_VORBIS, 44100, 1, 2000)}));
  write(t, "aiff-pcm16",
        cat({audio_prefix(1, 2, 3, 1), sound(SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 16000, 3, 100)}));
  write(t, "au-ulaw",
        cat({audio_prefix(0, 1, 0, 1), sound(SF_FORMAT_AU | SF_FORMAT_ULAW, 8000, 1, 150)}));
  write(t, "caf-double",
        cat({audio_prefix(1, 6, 1, 10), sound(SF_FORMAT_CAF | SF_FORMAT_DOUBLE, 96000, 1, 64)}));
  write(
      t, "w64-ima-adpcm",
      cat({audio_prefix(1, 2, 15, 1), sound(SF_FORMAT_W64 | SF_FORMAT_IMA_ADPCM, 16000, 1, 505)}));
  {
    const std::string name = "hd/audio/lang-english_speaker-03_trial-4_digit-0.flac";
    write(t, "hd-name", cat({audio_prefix(2, 0, 0, 0), Bytes(name.begin(), name.end())}));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds SOURCE_DIR CORPUS_DIR\n";
    return 2;
  }
  g_src = argv[1];
  g_out = argv[2];
  wire_codec_seeds();
  firmware_seeds();
  kernel_model_seeds();
  config_seeds();
  audio_seeds();
  std::cout << "seeds written to " << g_out << "\n";
  return 0;
}
