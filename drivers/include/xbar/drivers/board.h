// The one board interface everything above drivers/ uses, on the real board and on the twin
// alike. Physical units at this interface: conductance in uS, voltage in V, time in ns/us.
// Conversions to and from the wire's DAC/ADC codes happen here and only here.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "xbar/base/error.h"
#include "xbar/drivers/protocol_client.h"
#include "xbar/wire/loop_program.h"
#include "xbar/wire/messages.h"

namespace xbar {

struct VoltageRange {
  double lo_V = 0;
  double hi_V = 0;
};

/// What the board reports about itself (INFO), in physical units.
struct BoardInfo {
  std::string serial;
  std::string firmware_version;
  int protocol_version = 1;
  int arrays = 0;
  int rows = 0;
  int cols = 0;
  int adc_bits = 0;
  double adc_v_lo_V = 0, adc_v_hi_V = 0;
  double tia_v_ref_V = 0;
  std::vector<double> tia_gains_ohm;
  double v_read_V = 0;
  double read_gate_V = 0;
  int dac_bits = 0;
  double dac_v_min_V = 0, dac_v_max_V = 0;
  uint32_t width_step_ns = 0;
  uint32_t width_max_ns = 0;
  VoltageRange set_v, set_gate, reset_v, reset_gate;
  int max_vmm_vectors = 0;
  int max_read_avg = 0;
  bool is_sim = false;
  bool has_loop = false;
  bool has_loop_resume = false;  // LOOP_RUN RESUME/SNAPSHOT (capability bit 2)
  std::string backend;           // "sim", "tcp", "unix" or "usb"
  std::string link;              // transport description

  /// Largest conductance a READ at `gain_index` can measure before the ADC saturates, in uS.
  double full_scale_uS(int gain_index) const;
  /// The largest TIA gain whose output for a column summing `column_uS` (every row driven at
  /// v_read) stays inside the ADC's range above V_ref: the gain of a VMM whose fullest column
  /// sums that much. INVALID_ARGUMENT when no gain converts it.
  Result<int> vmm_gain_for(double column_uS) const;
  /// ADC codes per uS of column conductance (one bit plane, rows at v_read) at `gain_index`.
  double codes_per_uS(int gain_index) const;
};

struct BoardStatus {
  bool loop_running = false;
  int last_error = 0;
  uint64_t uptime_ns = 0;
  uint64_t ops_executed = 0;
  uint64_t pulses_applied = 0;
  uint32_t replays_served = 0;
};

struct ReadOptions {
  int gain_index = 2;  // index into BoardInfo::tia_gains_ohm (30 kOhm: 0..583 uS at 0.2 V)
  int n_avg = 1;       // reads per device, averaged (1..max_read_avg)
  int settle_ms = 0;   // the board idles this long before reading (relaxation), 0..10000
};

/// A whole array's conductances as read through the ADC.
struct ConductanceMap {
  int array = 0;
  Eigen::MatrixXd g_uS;  // rows x cols
  int saturated = 0;     // devices whose code hit full scale (g_uS is a lower bound)
  ReadOptions options;
};

struct DevicePulse {
  int row = 0;
  int col = 0;
  double v_V = 0;  // drain (SET) or source (RESET) voltage
  double gate_V = 0;
  double width_ns = 0;  // rounded to the board's width step
  /// Used when the batch's polarity is kMixed; otherwise the batch's polarity applies.
  wire::Polarity polarity = wire::Polarity::kSet;
};

struct PulseBatch {
  /// kSet or kReset for every device, or kMixed: each DevicePulse says its own.
  wire::Polarity polarity = wire::Polarity::kSet;
  std::vector<DevicePulse> devices;  // at most one pulse per device per batch
};

struct PulseBatchResult {
  int n_pulsed = 0;
  uint32_t duration_us = 0;
};

/// Thread-safe: every call is one protocol exchange, serialised by the ProtocolClient, and
/// may come from any thread. What the board holds between calls is not serialised: a loop run
/// after ensure_loop_loaded, or a verify after a program, needs the caller to own the board
/// for the sequence (xbard: the scheduler's board turn, server/src/scheduler.h).
class Board {
 public:
  /// Opens a board by URI through the transport its scheme registered
  /// (transport_registry.h): "sim:profile=typical,seed=7,noise_seed=1" (the twin in this
  /// process), "tcp:HOST:PORT" or "unix:PATH" (an xbar-fwsim process), "usb:" or
  /// "usb:serial=XS..." (the board), each only if the program links it (xbar_transports).
  /// Sends INFO and keeps the answer.
  static Result<std::unique_ptr<Board>> open(const std::string& uri);
  /// Wraps an already open transport (tests).
  static Result<std::unique_ptr<Board>> connect(std::unique_ptr<Transport> transport,
                                                ProtocolOptions options = {});

  const BoardInfo& info() const { return info_; }
  Result<BoardStatus> status();

  /// Reads every device of `array`.
  Result<ConductanceMap> read_array(int array, ReadOptions options = {});
  /// Reads a list of devices, in list order.
  Result<std::vector<double>> read_cells(int array, std::span<const wire::Cell> cells,
                                         ReadOptions options = {});
  /// Applies one pulse to each listed device. Checked against the board's ranges first; a
  /// rejected batch applies nothing.
  Result<PulseBatchResult> pulse(int array, const PulseBatch& batch);
  /// Bit-serial VMM: `inputs` holds n x rows 8-bit magnitudes; returns n x cols accumulators
  /// (sum over bit planes b of ADC code << b). Batches longer than the board's limit are split.
  Result<std::vector<uint32_t>> vmm(int array, std::span<const uint8_t> inputs, int gain_index);
  /// The same with the twin's noise tag: the noise is drawn as vectors first_vector.. of
  /// operation noise_op (the host-stepped loop reference; a real board ignores the tag).
  Result<std::vector<uint32_t>> vmm_tagged(int array, std::span<const uint8_t> inputs,
                                           int gain_index, uint64_t noise_op,
                                           uint32_t first_vector);

  // ---- the closed loop (docs/protocol.md §4.10) ----
  /// Loads one program per array (arrays increasing); returns the largest block size.
  Result<uint16_t> loop_load(const std::vector<wire::LoopProgram>& programs);
  /// loop_load unless exactly these programs are what this Board loaded last (one LOOP_LOAD
  /// saved per chunk when streams of one deployment take turns). Assumes no other host loads
  /// programs on the same board meanwhile; any failed loop request forgets the cache.
  /// \context any thread; that the programs are still loaded at the next loop_run needs the
  /// caller's board turn (another thread may load others in between).
  Result<uint16_t> ensure_loop_loaded(const std::vector<wire::LoopProgram>& programs);
  /// Runs one block of an open (or, with FIRST, a new) run.
  Result<wire::LoopRunReply> loop_run(const wire::LoopRunRequest& block);
  /// Stops a running loop; true if one was running.
  Result<bool> abort();

  /// Lets the board's clock run for `duration_us` (e.g. to let devices relax before verify).
  Result<uint64_t> wait_us(uint32_t duration_us);

  // ---- the twin only (ErrorCode::kUnsupported on a real board) ----
  Result<std::vector<wire::FaultKind>> sim_fault_map(int array);
  Result<Eigen::MatrixXd> sim_ground_truth(int array);
  Result<void> sim_inject_fault(int array, int row, int col, wire::FaultKind kind, double g_uS);
  Result<uint64_t> sim_clock(uint64_t advance_ns);
  /// The link's faults and what they did; with `set`, first puts those faults in force.
  Result<wire::SimLinkReply> sim_link(const std::optional<wire::LinkFaults>& set = std::nullopt);

  /// ADC code sum of `n_avg` reads -> conductance in uS (the host half of the read path).
  double code_sum_to_uS(uint32_t code_sum, int n_avg, int gain_index) const;
  /// Volts -> the nearest DAC code.
  uint16_t volts_to_code(double v_V) const;

  const ProtocolClient& client() const { return client_; }

 private:
  Board(std::unique_ptr<Transport> transport, ProtocolOptions options);
  Result<void> check_array(int array, std::string_view what) const;
  Result<void> check_read_options(const ReadOptions& o, std::string_view what) const;
  Result<void> require_sim(std::string_view what) const;

  ProtocolClient client_;
  BoardInfo info_;
  // ensure_loop_loaded's cache, guarded by its own lock (taken before the client's, never
  // after): what this Board last loaded, its block size and client_.epoch() at the time.
  std::mutex loaded_mu_;
  std::optional<std::vector<wire::LoopProgram>> loaded_programs_;
  uint16_t loaded_max_block_ = 0;
  uint64_t loaded_epoch_ = 0;
};

}  // namespace xbar
