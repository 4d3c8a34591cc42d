// The model around the analog kernels (DESIGN.md §5), on the host in Eigen: encoder
// Linear(F -> H) (F = the front end's channels: 1 for the block average, LogMel::bands for
// log-mel), H kernels (+ D skip), GELU, mixing Linear(H -> M) or Linear(H -> 2M) with GLU,
// mean-pool over time, decoder Linear(M -> classes), softmax. M = H in the paper. The kernels
// are a function argument, so the software path (the compiled kernels in floating point) and
// the hardware path (the board's closed loop) share everything else.
#pragma once

#include <Eigen/Core>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xbar/audio/audio.h"
#include "xbar/base/error.h"
#include "xbar/drivers/board.h"
#include "xbar/kernel/kernel.h"
#include "xbar/kernel/loop_plan.h"

namespace xbar::model {

struct Linear {
  Eigen::MatrixXd weight;  // outputs x inputs
  Eigen::VectorXd bias;    // outputs (zero when the model has none)
};

/// The model's front end is the audio library's (one definition of the fields, their ranges and
/// their arithmetic for the model, xbard and xbarctl).
using Preprocessing = audio::Preprocessing;
using LogMel = audio::LogMel;

/// What one kernel meets on real data (xbar.v1.KernelRange): measured by calibrate().
struct KernelRange {
  double state_max = 0;   // largest |Re|, |Im| of beta_k x_k the array holds, any mode and step
  double output_max = 0;  // largest |y| (2 Re(C x), no skip term)
  double input_max = 0;   // largest |z| (the encoder's output)
  /// The state range the loop should represent (its 8-bit codes span +-state_range): the one,
  /// among fractions of state_max, whose loop arithmetic (8-bit magnitudes, clamp, error
  /// feedback) gives the least output error on the clips. Clipping a rare peak costs less than
  /// coarse codes on every step. 0: not chosen (use state_max with headroom).
  double state_range = 0;
  double output_nrmse = 0;  // the loop arithmetic's output NRMSE at state_range, on the clips
};

/// The ranges of every kernel over a set of clips (xbar.v1.Calibration).
struct Calibration {
  std::vector<KernelRange> kernels;  // one per kernel; empty: the model is not calibrated
  int clips = 0;
  std::string source;
  /// Preprocessed clips the deploy runs on the board and in software (measure_fidelity), each
  /// steps x channels values, step-major (the model's input); independent of `kernels` (a model
  /// may carry either).
  std::vector<Eigen::VectorXd> fidelity_clips;
};
inline constexpr size_t kMaxFidelityClips = 64;
inline constexpr Eigen::Index kMaxFidelityClipSteps = 100000;

struct ModelSpec {
  std::string name;
  Preprocessing preprocessing;
  Linear encoder, mixing, decoder;
  bool glu = false;
  kernel::KernelSetSpec kernels;
  std::vector<std::string> classes;
  Calibration calibration;  // optional (older model files have none)
  int width() const { return static_cast<int>(kernels.kernels.size()); }  // H
  /// F: the values per step of the model's input, the encoder's inputs (audio::channels).
  int channels() const { return audio::channels(preprocessing); }
};

/// The head's width M: the mixing layer's outputs, halved by the GLU (the decoder takes M).
/// M = H is the paper's head; a wider one is host arithmetic only (docs/models.md).
inline int head_width(const ModelSpec& m) {
  const auto rows = static_cast<int>(m.mixing.weight.rows());
  return m.glu ? rows / 2 : rows;
}
inline constexpr int kMaxHeadWidth = 256;

/// Checks shapes and values; the message names the field and what it needs (the encoder takes
/// channels() inputs; fidelity clips are whole steps of channels() values).
Result<void> validate(const ModelSpec& m);

/// The encoder on a preprocessed clip `u` (T steps x F = m.channels() values, step-major):
/// H sequences of T steps, z_k[t] = sum_f W(k, f) u[t F + f] + b_k (summed in f order; with
/// F = 1 exactly W(k, 0) u[t] + b_k, as before the front end had channels). `u.size()` must be
/// a multiple of F (forward(), calibrate() and measure_fidelity() refuse other inputs).
std::vector<Eigen::VectorXd> encode(const ModelSpec& m, const Eigen::VectorXd& u);

/// H input sequences (one per kernel) -> H output sequences.
using KernelFn =
    std::function<Result<std::vector<Eigen::VectorXd>>(const std::vector<Eigen::VectorXd>&)>;

struct Forward {
  Eigen::VectorXd logits, probabilities;
  int label = 0;
  std::vector<Eigen::VectorXd> kernel_outputs;
};

/// The forward pass on a preprocessed clip `u` (T steps x channels() values, step-major).
/// kInvalidArgument for no steps, or a length that is not a multiple of channels().
Result<Forward> forward(const ModelSpec& m, const Eigen::VectorXd& u, const KernelFn& kernels);

/// The software kernels: each compiled (quantized) kernel's ideal recurrence.
KernelFn software_kernels(const std::vector<kernel::CompiledKernel>& compiled);

/// One deployed kernel: compiled, placed on `array`, whose conductances read back as `g_uS`.
/// `u_max` is the largest |input| the loop represents (kernel::LoopPlanOptions::u_max); set it
/// from input_bound() so the encoder's outputs are never clipped.
struct PlacedKernel {
  kernel::CompiledKernel compiled;
  kernel::Placement placement;
  int array = 0;
  Eigen::MatrixXd g_uS;
  double u_max = kernel::LoopPlanOptions{}.u_max;
  /// Take the devices that are off their targets out digitally (kernel::LoopPlanOptions::
  /// fix_devices); off for a naive deployment, which is the fault-unaware baseline.
  bool fix_devices = true;
  /// The model's calibrated state range for this kernel (kernel::LoopPlanOptions::state_range,
  /// or state_max with headroom); 0: none, the plan sizes it from synthetic inputs.
  double state_max = 0;
  double state_range = 0;
  double input_max = 0;  // the calibration's (kernel::LoopPlanOptions::input_max); 0: u_max
};

/// The largest |input| kernel `k` can receive: sum_f |W(k, f)| + |b_k| of the encoder, since
/// every value of a preprocessed clip lies in [-1, 1] (block averages) or [0, 1] (log-mel
/// features). Never below 1e-3 (the loop's scales divide by it).
double input_bound(const ModelSpec& m, int k);

/// Runs every preprocessed clip in `clips` (each steps x channels(), step-major) through the
/// encoder and each compiled kernel's ideal recurrence and returns the ranges they meet
/// (activation calibration): what the board's loop must represent so that real clips do not
/// clip. `compiled` is the model's kernels, compiled; kInvalidArgument for no clips, a clip with
/// a non-finite value, or a clip whose length is not a multiple of channels().
Result<Calibration> calibrate(const ModelSpec& m,
                              const std::vector<kernel::CompiledKernel>& compiled,
                              const std::vector<Eigen::VectorXd>& clips);

/// Per kernel, per mode: the largest |Re| or |Im| of the mode's state x_k (the compiled
/// recurrence, before any mode gain) over the clips, floored at 1/kModeRangeFloor of the
/// kernel's largest: what kernel::KernelSpec::mode_range takes, so that each mode's 8-bit
/// codes span what real clips put in it. kInvalidArgument as calibrate().
Result<std::vector<std::vector<double>>> measure_mode_ranges(
    const ModelSpec& m, const std::vector<kernel::CompiledKernel>& compiled,
    const std::vector<Eigen::VectorXd>& clips);
inline constexpr double kModeRangeFloor = 100;

/// The smallest state range that does not clip on the first step of the largest input:
/// input_max times the largest mode gain of the kernel (validate() refuses a calibration below
/// it, naming the kernel).
double least_state_range(const kernel::CompiledKernel& ck, double input_max);

/// The hardware kernels: loads one loop program per array (kernel::plan_loop) and returns a
/// KernelFn that runs all kernels together as one closed-loop run on the board (lag hidden).
/// The caller keeps the board to itself while the function is used. `board_ms`, if given,
/// accumulates the time spent in the board's runs. On a board without an on-board loop
/// (BoardInfo::has_loop false: the A0) it is emulated_kernels, the same programs host-stepped.
Result<KernelFn> hardware_kernels(Board& board, const std::vector<PlacedKernel>& kernels,
                                  double* board_ms = nullptr);

/// The board-exact reference (INFER_EMULATE): the same loop programs as hardware_kernels, run
/// host-stepped (xbar::HostSteppedRun): each step's row magnitudes, device fixes, rounding and
/// error feedback are computed on the host by the functions the firmware runs, and each step's
/// VMM is read from the board, tagged as that loop step. On the twin the output codes equal
/// hardware_kernels' bit for bit (same noise tags: 0 for the first call); on a real board a
/// difference points at the firmware's loop. Nothing is loaded; the caller keeps the board to
/// itself while the function runs.
Result<KernelFn> emulated_kernels(Board& board, const std::vector<PlacedKernel>& kernels,
                                  double* board_ms = nullptr);

/// How a deployed model computes on preprocessed clips (xbar.v1.ModelFidelity).
struct Fidelity {
  int clips = 0;
  double label_agreement = 0;           // fraction of clips: board label == software label
  double logit_nrmse = 0;               // board logits against software, over all clips
  std::vector<double> state_clip_rate;  // per kernel: predicted fraction of state updates clipped
  double board_ms = 0;
};

/// Runs each clip (steps x channels(), step-major) once on the board's loop (hardware_kernels,
/// noise tags 0, 1, ...) and once in software, as Infer does, and predicts each kernel's state
/// clipping: the fraction of the software state's updates (every step, mode, Re and Im of
/// beta_k x_k) beyond the range the loop plan's 8-bit codes represent (x_scale times the
/// clamp). kInvalidArgument for no clips or a clip that is not whole steps; board errors as
/// hardware_kernels. The caller keeps the board to itself.
Result<Fidelity> measure_fidelity(Board& board, const ModelSpec& m,
                                  const std::vector<PlacedKernel>& kernels,
                                  const std::vector<Eigen::VectorXd>& clips);

/// The model's head (GELU, mixing, mean-pool, decoder) fed one step at a time, for streams.
class StreamingHead {
 public:
  explicit StreamingHead(const ModelSpec& m) : m_(m), sum_(Eigen::VectorXd::Zero(head_width(m))) {}
  void push(const Eigen::VectorXd& kernel_outputs);  // H values of one step
  Forward result() const;                            // over the steps pushed so far
  int steps() const { return steps_; }

 private:
  const ModelSpec& m_;
  Eigen::VectorXd sum_;
  int steps_ = 0;
};

/// The kernels fed chunk by chunk: push(z) takes K new steps per kernel and returns the outputs
/// of the steps that are complete (per kernel, equal lengths); finish() returns the rest.
class KernelStream {
 public:
  virtual ~KernelStream() = default;
  virtual Result<std::vector<Eigen::VectorXd>> push(const std::vector<Eigen::VectorXd>& z) = 0;
  virtual Result<std::vector<Eigen::VectorXd>> finish() = 0;
  /// True while the stream needs the board to itself between calls (a run left open).
  virtual bool holds_board() const { return false; }
};

std::unique_ptr<KernelStream> software_stream(const std::vector<kernel::CompiledKernel>& compiled);
/// The kernels on the board's closed loop. On a board that can switch runs (INFO capability
/// bit 2) every push is a run of its own that resumes the state and step count the previous
/// one left: the board is free between pushes (other streams may run and load their programs;
/// the stream reloads its own), and the outputs are bit for bit those of one long run with the
/// same noise tag. Otherwise one LOOP_RUN stays open across pushes (holds_board(): the board
/// serves nothing else meanwhile). The destructor aborts a run left open. Each call needs the
/// board to itself while it runs. Without an on-board loop: emulated_stream.
Result<std::unique_ptr<KernelStream>> hardware_stream(Board& board,
                                                      const std::vector<PlacedKernel>& kernels,
                                                      uint32_t noise_tag);

/// The emulation of hardware_stream, chunk by chunk (the state stays on the host; the board is
/// free between pushes and is needed during each).
Result<std::unique_ptr<KernelStream>> emulated_stream(Board& board,
                                                      const std::vector<PlacedKernel>& kernels,
                                                      uint32_t noise_tag);

double gelu(double x);  // exact: x Phi(x)

}  // namespace xbar::model
