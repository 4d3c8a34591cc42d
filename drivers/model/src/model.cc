#include "xbar/model/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numbers>

#include "xbar/drivers/loop.h"
#include "xbar/kernel/loop_plan.h"
#include "xbar/kernel/model.h"

namespace xbar::model {

namespace {

Result<void> check_linear(const Linear& l, const char* name, int in, int out) {
  if (l.weight.rows() != out || l.weight.cols() != in) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.weight: {} x {}, the model needs {} x {} (outputs x inputs)",
                                  name, l.weight.rows(), l.weight.cols(), out, in));
  }
  if (l.bias.size() != out) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}.bias: {} values, {} needed", name, l.bias.size(), out));
  }
  if (!l.weight.allFinite() || !l.bias.allFinite()) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: weights must be finite numbers", name));
  }
  return {};
}

}  // namespace

double gelu(double x) { return 0.5 * x * std::erfc(-x / std::numbers::sqrt2); }

Result<void> validate(const ModelSpec& m) {
  const int h = m.width();
  if (h < 1 || h > kernel::kMaxKernels) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("kernel_set.kernels: {} kernels, allowed 1..{} (one per array)",
                                  h, kernel::kMaxKernels));
  }
  const Preprocessing& p = m.preprocessing;
  if (p.sample_rate_hz < 1000 || p.sample_rate_hz > 384000) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("preprocessing.sample_rate_hz = {}: allowed 1000..384000", p.sample_rate_hz));
  }
  if (p.downsample < 1 || p.downsample > 4096) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("preprocessing.downsample = {}: allowed 1..4096", p.downsample));
  }
  if (p.target_length < 0 || p.target_length > 100000) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("preprocessing.target_length = {}: allowed 0..100000", p.target_length));
  }
  if (auto c = check_linear(m.encoder, "encoder", 1, h); !c) return c;
  if (auto c = check_linear(m.mixing, "mixing", h, m.glu ? 2 * h : h); !c) return c;
  const int classes = static_cast<int>(m.decoder.weight.rows());
  if (classes < 2) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("decoder: {} outputs, a classifier needs >= 2", classes));
  }
  if (auto c = check_linear(m.decoder, "decoder", h, classes); !c) return c;
  if (!m.classes.empty() && static_cast<int>(m.classes.size()) != classes) {
    return make_error(
        ErrorCode::kInvalidArgument,
        fmt::format("classes: {} names for {} decoder outputs", m.classes.size(), classes));
  }
  return {};
}

Result<Forward> forward(const ModelSpec& m, const Eigen::VectorXd& u, const KernelFn& kernels) {
  const int h = m.width();
  if (u.size() == 0) return make_error(ErrorCode::kInvalidArgument, "input: no steps");
  std::vector<Eigen::VectorXd> z(static_cast<size_t>(h));
  for (int k = 0; k < h; ++k) {
    z[static_cast<size_t>(k)] = (m.encoder.weight(k, 0) * u.array() + m.encoder.bias(k)).matrix();
  }
  auto y = kernels(z);
  if (!y) return std::unexpected(y.error());
  if (static_cast<int>(y->size()) != h) {
    return make_error(ErrorCode::kInternal, "kernels returned the wrong number of sequences");
  }
  const Eigen::Index steps = u.size();
  Eigen::MatrixXd g(h, steps);
  for (int k = 0; k < h; ++k) {
    for (Eigen::Index t = 0; t < steps; ++t) g(k, t) = gelu((*y)[static_cast<size_t>(k)](t));
  }
  Eigen::MatrixXd mix = m.mixing.weight * g;
  mix.colwise() += m.mixing.bias;
  Eigen::MatrixXd act(h, steps);
  if (m.glu) {
    act = mix.topRows(h).array() / (1.0 + (-mix.bottomRows(h).array()).exp());
  } else {
    act = mix;
  }
  const Eigen::VectorXd pooled = act.rowwise().mean();
  Forward f;
  f.logits = m.decoder.weight * pooled + m.decoder.bias;
  const Eigen::VectorXd e = (f.logits.array() - f.logits.maxCoeff()).exp();
  f.probabilities = e / e.sum();
  f.probabilities.maxCoeff(&f.label);
  f.kernel_outputs = std::move(*y);
  return f;
}

KernelFn software_kernels(const std::vector<kernel::CompiledKernel>& compiled) {
  return [compiled](const std::vector<Eigen::VectorXd>& z) -> Result<std::vector<Eigen::VectorXd>> {
    std::vector<Eigen::VectorXd> out;
    for (size_t k = 0; k < z.size(); ++k)
      out.push_back(kernel::run_ideal(compiled[k].kernel, z[k]));
    return out;
  };
}

Result<KernelFn> hardware_kernels(Board& board, const std::vector<PlacedKernel>& kernels,
                                  double* board_ms) {
  // Programs in increasing array order (the protocol's rule); order[i] = kernel on program i.
  std::vector<size_t> order(kernels.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return kernels[a].array < kernels[b].array; });
  std::vector<kernel::LoopPlan> plans(kernels.size());
  std::vector<wire::LoopProgram> programs;
  for (size_t i : order) {
    const PlacedKernel& k = kernels[i];
    auto plan = kernel::plan_loop(k.compiled, k.placement, k.g_uS, k.array, board.info());
    if (!plan) return std::unexpected(plan.error());
    plans[i] = *plan;
    programs.push_back(plan->program);
  }
  auto max_block = board.loop_load(programs);
  if (!max_block) return std::unexpected(max_block.error());
  auto run_counter = std::make_shared<uint32_t>(0);
  return KernelFn([&board, plans, programs, order, max_block = *max_block, run_counter,
                   board_ms](const std::vector<Eigen::VectorXd>& z)
                      -> Result<std::vector<Eigen::VectorXd>> {
    const size_t n = programs.size();
    const auto steps = static_cast<size_t>(z.front().size());
    std::vector<int16_t> codes(steps * n);
    for (size_t j = 0; j < n; ++j) {  // program j runs kernel order[j]
      const auto in = kernel::input_codes(plans[order[j]], z[order[j]]);
      for (size_t t = 0; t < steps; ++t) codes[t * n + j] = in[t];
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_loop(board, programs, max_block, codes, steps, (*run_counter)++);
    if (board_ms) {
      *board_ms +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!r) return std::unexpected(r.error());
    std::vector<Eigen::VectorXd> out(n);
    for (size_t j = 0; j < n; ++j) {
      out[order[j]] = kernel::outputs_to_y(plans[order[j]], r->outputs, n, j, z[order[j]]);
    }
    return out;
  });
}

}  // namespace xbar::model
