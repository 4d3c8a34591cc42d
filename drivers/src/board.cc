#include "xbar/drivers/board.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace xbar {

namespace {

template <typename T, typename Fn>
Result<T> decode_or_error(Result<std::vector<uint8_t>> payload, Fn decode) {
  if (!payload) return std::unexpected(payload.error());
  auto d = decode(*payload);
  if (!d) return make_error(ErrorCode::kProtocol, "malformed reply: " + d.error());
  return std::move(*d);
}

double mV(uint16_t v) { return v / 1000.0; }

}  // namespace

double BoardInfo::full_scale_uS(int gain_index) const {
  const double i_fs_A =
      (adc_v_hi_V - tia_v_ref_V) / tia_gains_ohm.at(static_cast<size_t>(gain_index));
  return i_fs_A / v_read_V * 1e6;
}

Result<int> BoardInfo::vmm_gain_for(double column_uS) const {
  int gain = -1;
  for (int gi = 0; gi < static_cast<int>(tia_gains_ohm.size()); ++gi) {
    const double r = tia_gains_ohm[static_cast<size_t>(gi)];
    const double v = tia_v_ref_V + column_uS * 1e-6 * v_read_V * r;
    if (v <= adc_v_hi_V && (gain < 0 || r > tia_gains_ohm[static_cast<size_t>(gain)])) gain = gi;
  }
  if (gain < 0) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("a column sums {:.0f} uS, more than any TIA gain can convert", column_uS));
  }
  return gain;
}

double BoardInfo::codes_per_uS(int gain_index) const {
  const double lsb_V = (adc_v_hi_V - adc_v_lo_V) / (std::ldexp(1.0, adc_bits) - 1);
  return tia_gains_ohm[static_cast<size_t>(gain_index)] * v_read_V * 1e-6 / lsb_V;
}

Board::Board(std::unique_ptr<Transport> transport, ProtocolOptions options)
    : client_(std::move(transport), options) {}

Result<std::unique_ptr<Board>> Board::connect(std::unique_ptr<Transport> transport,
                                              ProtocolOptions options) {
  const std::string kind = transport->kind();
  const std::string link = transport->describe();
  std::unique_ptr<Board> b(new Board(std::move(transport), options));
  auto info = decode_or_error<wire::InfoReply>(b->client_.call(wire::Opcode::kInfo, {}),
                                               wire::decode_info_reply);
  if (!info) return std::unexpected(info.error());
  if (info->protocol_version != wire::kVersion) {
    return make_error(ErrorCode::kProtocol, fmt::format("board speaks protocol v{}, this host v{}",
                                                        info->protocol_version, wire::kVersion));
  }
  if (info->tia_gains_ohm.empty() || info->rows == 0 || info->cols == 0 || info->n_arrays == 0) {
    return make_error(ErrorCode::kProtocol, "INFO reply describes an empty board");
  }
  BoardInfo& i = b->info_;
  i.serial = info->serial;
  i.firmware_version = info->firmware_version;
  i.protocol_version = info->protocol_version;
  i.arrays = info->n_arrays;
  i.rows = info->rows;
  i.cols = info->cols;
  i.adc_bits = info->adc_bits;
  i.adc_v_lo_V = mV(info->adc_v_lo_mV);
  i.adc_v_hi_V = mV(info->adc_v_hi_mV);
  i.tia_v_ref_V = mV(info->tia_v_ref_mV);
  for (uint32_t g : info->tia_gains_ohm) i.tia_gains_ohm.push_back(g);
  i.v_read_V = mV(info->v_read_mV);
  i.read_gate_V = mV(info->read_gate_mV);
  i.dac_bits = info->dac_bits;
  i.dac_v_min_V = info->dac_v_min_mV / 1000.0;
  i.dac_v_max_V = info->dac_v_max_mV / 1000.0;
  i.width_step_ns = info->width_step_ns;
  i.width_max_ns = uint32_t{info->width_step_ns} * info->width_max_code;
  i.set_v = {mV(info->set_v_min_mV), mV(info->set_v_max_mV)};
  i.set_gate = {mV(info->set_gate_min_mV), mV(info->set_gate_max_mV)};
  i.reset_v = {mV(info->reset_v_min_mV), mV(info->reset_v_max_mV)};
  i.reset_gate = {mV(info->reset_gate_min_mV), mV(info->reset_gate_max_mV)};
  i.max_vmm_vectors = info->max_vmm_vectors;
  i.max_read_avg = info->max_read_avg;
  i.is_sim = info->capabilities & wire::kCapSim;
  i.has_loop = info->capabilities & wire::kCapLoop;
  i.has_loop_resume = i.has_loop && (info->capabilities & wire::kCapLoopResume);
  i.backend = kind;
  i.link = link;
  return b;
}

Result<void> Board::check_array(int array, std::string_view what) const {
  if (array < 0 || array >= info_.arrays) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: array = {}: allowed 0..{}", what, array, info_.arrays - 1));
  }
  return {};
}

Result<void> Board::check_read_options(const ReadOptions& o, std::string_view what) const {
  if (o.gain_index < 0 || o.gain_index >= static_cast<int>(info_.tia_gains_ohm.size())) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: gain_index = {}: allowed 0..{}", what, o.gain_index,
                                  info_.tia_gains_ohm.size() - 1));
  }
  if (o.settle_ms < 0 || o.settle_ms > wire::ReadRequest::kMaxSettleMs) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: settle_ms = {}: allowed 0..{}", what, o.settle_ms,
                                  wire::ReadRequest::kMaxSettleMs));
  }
  if (o.n_avg < 1 || o.n_avg > info_.max_read_avg) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("{}: n_avg = {}: allowed 1..{}",
                                                               what, o.n_avg, info_.max_read_avg));
  }
  return {};
}

Result<void> Board::require_sim(std::string_view what) const {
  if (!info_.is_sim) {
    return make_error(ErrorCode::kUnsupported,
                      fmt::format("{}: only the simulated board answers SIM_* requests; "
                                  "board {} is real",
                                  what, info_.serial));
  }
  return {};
}

double Board::code_sum_to_uS(uint32_t code_sum, int n_avg, int gain_index) const {
  const double lsb_V = (info_.adc_v_hi_V - info_.adc_v_lo_V) / ((1u << info_.adc_bits) - 1);
  const double v_out_V = info_.adc_v_lo_V + (static_cast<double>(code_sum) / n_avg) * lsb_V;
  const double i_A =
      (v_out_V - info_.tia_v_ref_V) / info_.tia_gains_ohm[static_cast<size_t>(gain_index)];
  return i_A / info_.v_read_V * 1e6;
}

uint16_t Board::volts_to_code(double v_V) const {
  const double max_code = static_cast<double>((1u << info_.dac_bits) - 1);
  const double code =
      std::round((v_V - info_.dac_v_min_V) / (info_.dac_v_max_V - info_.dac_v_min_V) * max_code);
  return static_cast<uint16_t>(std::clamp(code, 0.0, max_code));
}

Result<BoardStatus> Board::status() {
  auto s = decode_or_error<wire::StatusReply>(client_.call(wire::Opcode::kStatus, {}),
                                              wire::decode_status_reply);
  if (!s) return std::unexpected(s.error());
  return BoardStatus{s->state == wire::BoardState::kLoopRunning,
                     s->last_error,
                     s->uptime_ns,
                     s->ops_executed,
                     s->pulses_applied,
                     s->replays_served};
}

Result<ConductanceMap> Board::read_array(int array, ReadOptions options) {
  if (auto c = check_array(array, "read_array"); !c) return std::unexpected(c.error());
  if (auto c = check_read_options(options, "read_array"); !c) return std::unexpected(c.error());
  wire::ReadRequest q;
  q.array = static_cast<uint8_t>(array);
  q.gain_index = static_cast<uint8_t>(options.gain_index);
  q.n_avg = static_cast<uint8_t>(options.n_avg);
  q.mode = wire::ReadMode::kWholeArray;
  q.settle_ms = static_cast<uint16_t>(options.settle_ms);
  auto r = decode_or_error<wire::ReadReply>(
      client_.call(wire::Opcode::kRead, q.encode(), std::chrono::milliseconds(options.settle_ms)),
      wire::decode_read_reply);
  if (!r) return std::unexpected(r.error());
  const size_t cells = static_cast<size_t>(info_.rows) * info_.cols;
  if (r->code_sums.size() != cells) {
    return make_error(ErrorCode::kProtocol, fmt::format("READ reply has {} values, expected {}",
                                                        r->code_sums.size(), cells));
  }
  ConductanceMap m;
  m.array = array;
  m.options = options;
  m.g_uS.resize(info_.rows, info_.cols);
  const uint32_t sat = ((1u << info_.adc_bits) - 1) * static_cast<uint32_t>(options.n_avg);
  for (int row = 0; row < info_.rows; ++row) {
    for (int col = 0; col < info_.cols; ++col) {
      const uint32_t s = r->code_sums[static_cast<size_t>(row) * info_.cols + col];
      if (s >= sat) ++m.saturated;
      m.g_uS(row, col) = code_sum_to_uS(s, options.n_avg, options.gain_index);
    }
  }
  return m;
}

Result<std::vector<double>> Board::read_cells(int array, std::span<const wire::Cell> cells,
                                              ReadOptions options) {
  if (auto c = check_array(array, "read_cells"); !c) return std::unexpected(c.error());
  if (auto c = check_read_options(options, "read_cells"); !c) return std::unexpected(c.error());
  const size_t max_cells = static_cast<size_t>(info_.rows) * info_.cols;
  if (cells.empty() || cells.size() > max_cells) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("read_cells: {} cells: allowed 1..{}", cells.size(), max_cells));
  }
  for (size_t i = 0; i < cells.size(); ++i) {
    if (cells[i].row >= info_.rows || cells[i].col >= info_.cols) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("read_cells: cells[{}] = ({}, {}) outside {}x{}", i,
                                    cells[i].row, cells[i].col, info_.rows, info_.cols));
    }
  }
  wire::ReadRequest q;
  q.array = static_cast<uint8_t>(array);
  q.gain_index = static_cast<uint8_t>(options.gain_index);
  q.n_avg = static_cast<uint8_t>(options.n_avg);
  q.mode = wire::ReadMode::kCells;
  q.settle_ms = static_cast<uint16_t>(options.settle_ms);
  q.cells.assign(cells.begin(), cells.end());
  auto r = decode_or_error<wire::ReadReply>(
      client_.call(wire::Opcode::kRead, q.encode(), std::chrono::milliseconds(options.settle_ms)),
      wire::decode_read_reply);
  if (!r) return std::unexpected(r.error());
  if (r->code_sums.size() != cells.size()) {
    return make_error(ErrorCode::kProtocol, "READ reply length does not match the cell list");
  }
  std::vector<double> g;
  g.reserve(cells.size());
  for (uint32_t s : r->code_sums) g.push_back(code_sum_to_uS(s, options.n_avg, options.gain_index));
  return g;
}

Result<PulseBatchResult> Board::pulse(int array, const PulseBatch& batch) {
  if (auto c = check_array(array, "pulse"); !c) return std::unexpected(c.error());
  const size_t cells = static_cast<size_t>(info_.rows) * info_.cols;
  // Order by device index: the wire carries the codes in row-major mask order.
  std::vector<std::pair<size_t, const DevicePulse*>> order;
  order.reserve(batch.devices.size());
  for (size_t k = 0; k < batch.devices.size(); ++k) {
    const DevicePulse& d = batch.devices[k];
    const wire::Polarity p = batch.polarity == wire::Polarity::kMixed ? d.polarity : batch.polarity;
    if (p != wire::Polarity::kSet && p != wire::Polarity::kReset) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("pulse: devices[{}].polarity: allowed SET or RESET", k));
    }
    const bool set = p == wire::Polarity::kSet;
    const VoltageRange vr = set ? info_.set_v : info_.reset_v;
    const VoltageRange gr = set ? info_.set_gate : info_.reset_gate;
    const char* pol = set ? "SET" : "RESET";
    if (d.row < 0 || d.row >= info_.rows || d.col < 0 || d.col >= info_.cols) {
      return make_error(
          ErrorCode::kInvalidArgument,
          fmt::format("pulse: devices[{}] = (row {}, col {}): allowed rows 0..{}, cols 0..{}", k,
                      d.row, d.col, info_.rows - 1, info_.cols - 1));
    }
    if (!(d.v_V >= vr.lo_V && d.v_V <= vr.hi_V)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("pulse: devices[{}].v_V = {}: {} voltage allowed {}..{} V", k,
                                    d.v_V, pol, vr.lo_V, vr.hi_V));
    }
    if (!(d.gate_V >= gr.lo_V && d.gate_V <= gr.hi_V)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("pulse: devices[{}].gate_V = {}: {} gate allowed {}..{} V", k,
                                    d.gate_V, pol, gr.lo_V, gr.hi_V));
    }
    if (!(d.width_ns >= info_.width_step_ns && d.width_ns <= info_.width_max_ns)) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("pulse: devices[{}].width_ns = {}: allowed {}..{} ns", k,
                                    d.width_ns, info_.width_step_ns, info_.width_max_ns));
    }
    order.emplace_back(static_cast<size_t>(d.row) * info_.cols + d.col, &d);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t k = 1; k < order.size(); ++k) {
    if (order[k].first == order[k - 1].first) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("pulse: device (row {}, col {}) listed twice; one pulse per "
                                    "device per batch",
                                    order[k].second->row, order[k].second->col));
    }
  }
  wire::PulseBatchRequest q;
  q.array = static_cast<uint8_t>(array);
  q.polarity = batch.polarity;
  q.mask.assign((cells + 7) / 8, 0);
  if (q.polarity == wire::Polarity::kMixed) q.reset_mask.assign((cells + 7) / 8, 0);
  for (const auto& [idx, d] : order) {
    wire::mask_set(q.mask, idx);
    if (q.polarity == wire::Polarity::kMixed && d->polarity == wire::Polarity::kReset) {
      wire::mask_set(q.reset_mask, idx);
    }
    const double w = std::round(d->width_ns / info_.width_step_ns);
    q.codes.push_back(
        {volts_to_code(d->v_V), volts_to_code(d->gate_V), static_cast<uint16_t>(std::max(1.0, w))});
  }
  auto r = decode_or_error<wire::PulseBatchReply>(
      client_.call(wire::Opcode::kPulseBatch, q.encode()), wire::decode_pulse_batch_reply);
  if (!r) return std::unexpected(r.error());
  return PulseBatchResult{r->n_pulsed, r->duration_us};
}

Result<std::vector<uint32_t>> Board::vmm(int array, std::span<const uint8_t> inputs,
                                         int gain_index) {
  if (auto c = check_array(array, "vmm"); !c) return std::unexpected(c.error());
  if (auto c = check_read_options({gain_index, 1}, "vmm"); !c) return std::unexpected(c.error());
  const size_t rows = static_cast<size_t>(info_.rows), cols = static_cast<size_t>(info_.cols);
  if (inputs.empty() || inputs.size() % rows != 0) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("vmm: inputs has {} bytes: must be a positive multiple of {} rows",
                    inputs.size(), rows));
  }
  const size_t n = inputs.size() / rows;
  std::vector<uint32_t> acc;
  acc.reserve(n * cols);
  for (size_t start = 0; start < n; start += static_cast<size_t>(info_.max_vmm_vectors)) {
    const size_t count = std::min(n - start, static_cast<size_t>(info_.max_vmm_vectors));
    wire::VmmRequest q;
    q.array = static_cast<uint8_t>(array);
    q.gain_index = static_cast<uint8_t>(gain_index);
    q.n_vectors = static_cast<uint16_t>(count);
    q.inputs.assign(inputs.begin() + static_cast<ptrdiff_t>(start * rows),
                    inputs.begin() + static_cast<ptrdiff_t>((start + count) * rows));
    auto r = decode_or_error<wire::VmmReply>(
        client_.call(wire::Opcode::kVmm, q.encode()),
        [cols](std::span<const uint8_t> p) { return wire::decode_vmm_reply(p, cols); });
    if (!r) return std::unexpected(r.error());
    if (r->n_vectors != count) return make_error(ErrorCode::kProtocol, "VMM reply count mismatch");
    acc.insert(acc.end(), r->acc.begin(), r->acc.end());
  }
  return acc;
}

Result<std::vector<uint32_t>> Board::vmm_tagged(int array, std::span<const uint8_t> inputs,
                                                int gain_index, uint64_t noise_op,
                                                uint32_t first_vector) {
  if (auto c = check_array(array, "vmm"); !c) return std::unexpected(c.error());
  if (auto c = check_read_options({gain_index, 1}, "vmm"); !c) return std::unexpected(c.error());
  const size_t rows = static_cast<size_t>(info_.rows), cols = static_cast<size_t>(info_.cols);
  const size_t n = inputs.size() / rows;
  if (inputs.empty() || inputs.size() % rows != 0 ||
      n > static_cast<size_t>(info_.max_vmm_vectors)) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("vmm: inputs has {} bytes: need 1..{} vectors of {} rows",
                                  inputs.size(), info_.max_vmm_vectors, rows));
  }
  wire::VmmRequest q;
  q.array = static_cast<uint8_t>(array);
  q.gain_index = static_cast<uint8_t>(gain_index);
  q.n_vectors = static_cast<uint16_t>(n);
  q.inputs.assign(inputs.begin(), inputs.end());
  q.has_noise_tag = true;
  q.noise_op = noise_op;
  q.first_vector = first_vector;
  auto r = decode_or_error<wire::VmmReply>(
      client_.call(wire::Opcode::kVmm, q.encode()),
      [cols](std::span<const uint8_t> p) { return wire::decode_vmm_reply(p, cols); });
  if (!r) return std::unexpected(r.error());
  if (r->n_vectors != n) return make_error(ErrorCode::kProtocol, "VMM reply count mismatch");
  return std::move(r->acc);
}

Result<uint16_t> Board::loop_load(const std::vector<wire::LoopProgram>& programs) {
  if (!info_.has_loop) {
    return make_error(ErrorCode::kUnsupported,
                      fmt::format("loop_load: board {} (firmware {}) has no closed loop",
                                  info_.serial, info_.firmware_version));
  }
  if (auto e = wire::check_loop_programs(programs, info_.arrays, info_.rows, info_.cols,
                                         static_cast<int>(info_.tia_gains_ohm.size()));
      !e.empty()) {
    return make_error(ErrorCode::kInvalidArgument, e);
  }
  wire::LoopLoadRequest q{programs};
  const std::lock_guard lk(loaded_mu_);
  loaded_programs_.reset();
  auto r = decode_or_error<wire::LoopLoadReply>(client_.call(wire::Opcode::kLoopLoad, q.encode()),
                                                wire::decode_loop_load_reply);
  if (!r) return std::unexpected(r.error());
  loaded_programs_ = programs;
  loaded_max_block_ = r->max_block_steps;
  loaded_epoch_ = client_.epoch();
  return r->max_block_steps;
}

Result<uint16_t> Board::ensure_loop_loaded(const std::vector<wire::LoopProgram>& programs) {
  {
    const std::lock_guard lk(loaded_mu_);
    // A restart since the load erased the programs on the board.
    if (loaded_programs_ && *loaded_programs_ == programs && loaded_epoch_ == client_.epoch()) {
      return loaded_max_block_;
    }
  }
  return loop_load(programs);
}

Result<wire::LoopRunReply> Board::loop_run(const wire::LoopRunRequest& block) {
  if ((block.flags & (wire::kLoopResume | wire::kLoopSnapshot)) && !info_.has_loop_resume) {
    return make_error(ErrorCode::kUnsupported,
                      fmt::format("loop_run: board {} (firmware {}) cannot switch runs "
                                  "(RESUME/SNAPSHOT)",
                                  info_.serial, info_.firmware_version));
  }
  auto r = decode_or_error<wire::LoopRunReply>(client_.call(wire::Opcode::kLoopRun, block.encode()),
                                               wire::decode_loop_run_reply);
  if (!r) {
    const std::lock_guard lk(loaded_mu_);
    loaded_programs_.reset();
  }
  return r;
}

Result<bool> Board::abort() {
  auto r = decode_or_error<wire::AbortReply>(client_.call(wire::Opcode::kAbort, {}),
                                             wire::decode_abort_reply);
  if (!r) return std::unexpected(r.error());
  return r->was_running != 0;
}

Result<uint64_t> Board::wait_us(uint32_t duration_us) {
  if (duration_us > wire::WaitRequest::kMaxUs) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("wait_us: duration_us = {}: allowed 0..{}", duration_us,
                                  wire::WaitRequest::kMaxUs));
  }
  wire::WaitRequest q{duration_us};
  auto r = decode_or_error<wire::WaitReply>(
      client_.call(wire::Opcode::kWait, q.encode(),
                   std::chrono::milliseconds(duration_us / 1000 + 1)),
      wire::decode_wait_reply);
  if (!r) return std::unexpected(r.error());
  return r->uptime_ns;
}

Result<std::vector<wire::FaultKind>> Board::sim_fault_map(int array) {
  if (auto c = require_sim("sim_fault_map"); !c) return std::unexpected(c.error());
  if (auto c = check_array(array, "sim_fault_map"); !c) return std::unexpected(c.error());
  const size_t cells = static_cast<size_t>(info_.rows) * info_.cols;
  auto r = decode_or_error<wire::SimFaultMapReply>(
      client_.call(wire::Opcode::kSimFaultMap,
                   wire::ArrayRequest{static_cast<uint8_t>(array)}.encode()),
      [cells](std::span<const uint8_t> p) { return wire::decode_sim_fault_map_reply(p, cells); });
  if (!r) return std::unexpected(r.error());
  return std::move(r->faults);
}

Result<Eigen::MatrixXd> Board::sim_ground_truth(int array) {
  if (auto c = require_sim("sim_ground_truth"); !c) return std::unexpected(c.error());
  if (auto c = check_array(array, "sim_ground_truth"); !c) return std::unexpected(c.error());
  const size_t cells = static_cast<size_t>(info_.rows) * info_.cols;
  auto r = decode_or_error<wire::SimGroundTruthReply>(
      client_.call(wire::Opcode::kSimGroundTruth,
                   wire::ArrayRequest{static_cast<uint8_t>(array)}.encode()),
      [cells](std::span<const uint8_t> p) {
        return wire::decode_sim_ground_truth_reply(p, cells);
      });
  if (!r) return std::unexpected(r.error());
  Eigen::MatrixXd g(info_.rows, info_.cols);
  for (int row = 0; row < info_.rows; ++row) {
    for (int col = 0; col < info_.cols; ++col) {
      g(row, col) = r->g_uS[static_cast<size_t>(row) * info_.cols + col];
    }
  }
  return g;
}

Result<void> Board::sim_inject_fault(int array, int row, int col, wire::FaultKind kind,
                                     double g_uS) {
  if (auto c = require_sim("sim_inject_fault"); !c) return std::unexpected(c.error());
  if (auto c = check_array(array, "sim_inject_fault"); !c) return std::unexpected(c.error());
  if (row < 0 || row >= info_.rows || col < 0 || col >= info_.cols) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("sim_inject_fault: (row {}, col {}) outside {}x{}", row, col,
                                  info_.rows, info_.cols));
  }
  wire::SimInjectFaultRequest q{static_cast<uint8_t>(array), static_cast<uint8_t>(row),
                                static_cast<uint8_t>(col), kind, static_cast<float>(g_uS)};
  auto r = client_.call(wire::Opcode::kSimInjectFault, q.encode());
  if (!r) return std::unexpected(r.error());
  return {};
}

Result<uint64_t> Board::sim_clock(uint64_t advance_ns) {
  if (auto c = require_sim("sim_clock"); !c) return std::unexpected(c.error());
  wire::SimClockRequest q{advance_ns ? wire::ClockOp::kAdvance : wire::ClockOp::kQuery, advance_ns};
  auto r = decode_or_error<wire::SimClockReply>(client_.call(wire::Opcode::kSimClock, q.encode()),
                                                wire::decode_sim_clock_reply);
  if (!r) return std::unexpected(r.error());
  return r->now_ns;
}

Result<wire::SimLinkReply> Board::sim_link(const std::optional<wire::LinkFaults>& set) {
  if (auto c = require_sim("sim_link"); !c) return std::unexpected(c.error());
  wire::SimLinkRequest q;
  if (set) {
    q.op = wire::LinkOp::kSet;
    q.faults = *set;
  }
  return decode_or_error<wire::SimLinkReply>(client_.call(wire::Opcode::kSimLink, q.encode()),
                                             wire::decode_sim_link_reply);
}

}  // namespace xbar
