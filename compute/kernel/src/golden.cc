#include "xbar/kernel/golden.h"

#include <Eigen/Eigenvalues>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>

namespace xbar::kernel {

namespace {

// The four row voltages of a complex value: (re+, re-, im+, im-).
Eigen::Vector4d split(cd z) {
  return {std::max(z.real(), 0.0), std::max(-z.real(), 0.0), std::max(z.imag(), 0.0),
          std::max(-z.imag(), 0.0)};
}

Eigen::VectorXd unit_rms(const Eigen::VectorXd& v) {
  const double rms = std::sqrt(v.squaredNorm() / static_cast<double>(v.size()));
  return rms > 0 ? Eigen::VectorXd(v / rms) : v;
}

}  // namespace

Eigen::VectorXd run_ideal(const DiscreteKernel& k, const Eigen::VectorXd& u) {
  const int n = k.states();
  std::vector<cd> x(static_cast<size_t>(n), 0.0);
  Eigen::VectorXd y(u.size());
  for (Eigen::Index t = 0; t < u.size(); ++t) {
    double acc = 0;
    for (int j = 0; j < n; ++j) {
      const auto jj = static_cast<size_t>(j);
      x[jj] = k.a_bar[jj] * x[jj] + u(t);
      acc += (k.c_bar[jj] * x[jj]).real();
    }
    y(t) = 2 * acc + k.d * u(t);
  }
  return y;
}

Eigen::VectorXd convolution_kernel(const DiscreteKernel& k, int length) {
  Eigen::VectorXd out(length);
  std::vector<cd> pw(k.a_bar.size(), 1.0);
  for (int l = 0; l < length; ++l) {
    double acc = 0;
    for (size_t j = 0; j < pw.size(); ++j) {
      acc += (k.c_bar[j] * pw[j]).real();
      pw[j] *= k.a_bar[j];
    }
    out(l) = 2 * acc;
  }
  return out;
}

Eigen::VectorXd run_crossbar(const CompiledKernel& ck, const Placement& p,
                             const Eigen::MatrixXd& g_uS, const Eigen::VectorXd& u) {
  const int n = ck.n;
  const Eigen::Index steps = u.size();
  Eigen::VectorXd v = Eigen::VectorXd::Zero(kSide);  // physical row voltages
  std::vector<cd> x(static_cast<size_t>(n), 0.0);    // x_{t-1}
  Eigen::VectorXd y(steps);
  auto prow = [&](int logical) { return p.row_of[static_cast<size_t>(logical)]; };
  auto pcol = [&](int logical) { return p.col_of[static_cast<size_t>(logical)]; };
  // Step t applies u_t and x_{t-1}: the state columns give x_t, the output columns y_{t-1}.
  // One extra step with u = 0 flushes y_{T-1}.
  for (Eigen::Index t = 0; t <= steps; ++t) {
    const double ut = t < steps ? u(t) : 0.0;
    v.setZero();
    const Eigen::Vector4d vu = split(cd(ut * ck.input_gain, 0));
    for (int comp = 0; comp < 4; ++comp) v(prow(input_row(comp))) = vu(comp);
    for (int k = 0; k < n; ++k) {
      const Eigen::Vector4d vx = split(x[static_cast<size_t>(k)]);
      for (int comp = 0; comp < 4; ++comp) v(prow(state_row(k, comp))) = vx(comp);
    }
    const Eigen::VectorXd i = g_uS.transpose() * v;  // column currents (uS x V units)
    if (t > 0) {
      const double i_r = i(pcol(output_col(n, 0))) - i(pcol(output_col(n, 1)));
      y(t - 1) = 2 * i_r / ck.output_scale_uS + ck.kernel.d * u(t - 1);
    }
    for (int k = 0; k < n; ++k) {
      const double re = i(pcol(state_col(k, 0))) - i(pcol(state_col(k, 1)));
      const double im = i(pcol(state_col(k, 2))) - i(pcol(state_col(k, 3)));
      x[static_cast<size_t>(k)] = cd(re, im) / ck.state_scale_uS;
    }
  }
  return y;
}

Eigen::MatrixXd effective_state_matrix(const CompiledKernel& ck, const Placement& p,
                                       const Eigen::MatrixXd& g_uS) {
  const int n = ck.n;
  Eigen::MatrixXd m(2 * n, 2 * n);
  for (int j = 0; j < 2 * n; ++j) {
    const int k = j / 2, part = j % 2;  // part 0: real (rows comp 0/1), 1: imaginary (2/3)
    const auto pos =
        static_cast<Eigen::Index>(p.row_of[static_cast<size_t>(state_row(k, 2 * part))]);
    const auto neg =
        static_cast<Eigen::Index>(p.row_of[static_cast<size_t>(state_row(k, 2 * part + 1))]);
    // Currents for +1 on the positive row minus currents for +1 on the negative row, halved.
    const Eigen::VectorXd i = 0.5 * (g_uS.row(pos) - g_uS.row(neg)).transpose();
    for (int q = 0; q < n; ++q) {
      auto col = [&](int comp) { return i(p.col_of[static_cast<size_t>(state_col(q, comp))]); };
      m(2 * q, j) = (col(0) - col(1)) / ck.state_scale_uS;
      m(2 * q + 1, j) = (col(2) - col(3)) / ck.state_scale_uS;
    }
  }
  return m;
}

double spectral_radius(const Eigen::MatrixXd& m) {
  if (!m.allFinite()) return std::numeric_limits<double>::infinity();
  Eigen::EigenSolver<Eigen::MatrixXd> es(m, false);
  return es.eigenvalues().cwiseAbs().maxCoeff();
}

std::vector<Eigen::VectorXd> fidelity_inputs(int length) {
  std::mt19937_64 rng(20260101);  // fixed: the metric must not move between runs
  std::normal_distribution<double> z(0.0, 1.0);
  const Eigen::Index len = length;
  std::vector<Eigen::VectorXd> out;
  Eigen::VectorXd white(len), lowpass(len), chirp(len), step(len), bursts(len);
  double ar = 0;
  for (Eigen::Index t = 0; t < len; ++t) {
    white(t) = z(rng);
    ar = 0.95 * ar + z(rng);
    lowpass(t) = ar;
    const double f = static_cast<double>(t) / static_cast<double>(len);
    chirp(t) = std::sin(2 * std::numbers::pi * (0.002 + 0.2 * f) * static_cast<double>(t));
    step(t) = t >= len / 4 ? 1.0 : 0.0;
    // Two syllable-like bursts: noise under raised-cosine envelopes.
    const double e1 =
        std::abs(f - 0.3) < 0.12 ? 0.5 + 0.5 * std::cos(std::numbers::pi * (f - 0.3) / 0.12) : 0;
    const double e2 =
        std::abs(f - 0.65) < 0.15 ? 0.5 + 0.5 * std::cos(std::numbers::pi * (f - 0.65) / 0.15) : 0;
    bursts(t) = (e1 + e2) * z(rng);
  }
  for (Eigen::VectorXd* v : {&white, &lowpass, &chirp, &step, &bursts}) out.push_back(unit_rms(*v));
  return out;
}

double nrmse(const std::vector<Eigen::VectorXd>& y, const std::vector<Eigen::VectorXd>& y_ref) {
  double num = 0, den = 0;
  for (size_t s = 0; s < y.size(); ++s) {
    num += (y[s] - y_ref[s]).squaredNorm();
    den += y_ref[s].squaredNorm();
  }
  if (!std::isfinite(num)) return std::numeric_limits<double>::infinity();  // diverged
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

double fidelity_nrmse(const CompiledKernel& ck, const Placement& p, const Eigen::MatrixXd& g_uS,
                      const std::vector<Eigen::VectorXd>& inputs) {
  std::vector<Eigen::VectorXd> y, ref;
  for (const Eigen::VectorXd& u : inputs) {
    y.push_back(run_crossbar(ck, p, g_uS, u));
    ref.push_back(run_ideal(ck.kernel, u));
  }
  return nrmse(y, ref);
}

double quantization_nrmse(const CompiledKernel& ck, const std::vector<Eigen::VectorXd>& inputs) {
  std::vector<Eigen::VectorXd> y, ref;
  for (const Eigen::VectorXd& u : inputs) {
    y.push_back(run_ideal(ck.kernel, u));
    ref.push_back(run_ideal(ck.unquantized, u));
  }
  return nrmse(y, ref);
}

Eigen::MatrixXd error_sensitivity(const CompiledKernel& ck,
                                  const std::vector<Eigen::VectorXd>& inputs) {
  const int n = ck.n;
  Eigen::MatrixXd sens = Eigen::MatrixXd::Zero(kSide, kSide);
  double energy = 0;
  const int used_rows = 4 + 4 * n;
  for (const Eigen::VectorXd& u : inputs) {
    const Eigen::Index steps = u.size();
    // Ideal row voltages v_r(t) (logical rows), from the ideal state trajectory.
    Eigen::MatrixXd v = Eigen::MatrixXd::Zero(used_rows, steps);
    std::vector<cd> x(static_cast<size_t>(n), 0.0);  // x_{t-1}
    for (Eigen::Index t = 0; t < steps; ++t) {
      v.block<4, 1>(0, t) = split(cd(u(t) * ck.input_gain, 0));
      for (int k = 0; k < n; ++k) {
        const auto kk = static_cast<size_t>(k);
        v.block<4, 1>(state_row(k, 0), t) = split(ck.mode_gain[kk] * x[kk]);
      }
      double acc = 0;
      for (int k = 0; k < n; ++k) {
        const auto kk = static_cast<size_t>(k);
        x[kk] = ck.kernel.a_bar[kk] * x[kk] + u(t);
        acc += (ck.kernel.c_bar[kk] * x[kk]).real();
      }
      energy += std::pow(2 * acc + ck.kernel.d * u(t), 2);
    }
    // Output columns: a device error delta on row r adds +-2 delta v_r(t) / s_out to y.
    const Eigen::VectorXd row_energy = v.rowwise().squaredNorm();
    for (int comp = 0; comp < 2; ++comp) {
      sens.block(0, output_col(n, comp), used_rows, 1) +=
          row_energy * std::pow(2.0 / ck.output_scale_uS, 2);
    }
    // State columns of state k: the error enters x_k (times 1, -1, i or -i) and decays with
    // a_bar_k: z(t) = a_bar_k z(t-1) + v_r(t), y error = 2 Re(c_bar_k e z(t)) delta / s.
    for (int k = 0; k < n; ++k) {
      const auto kk = static_cast<size_t>(k);
      const cd a = ck.kernel.a_bar[kk], c = ck.kernel.c_bar[kk] / ck.mode_gain[kk];
      for (int r = 0; r < used_rows; ++r) {
        cd zt = 0;
        double e_re = 0, e_im = 0;
        for (Eigen::Index t = 0; t < steps; ++t) {
          zt = a * zt + v(r, t);
          e_re += std::pow(2 * (c * zt).real(), 2);             // e = +-1
          e_im += std::pow(2 * (c * cd(0, 1) * zt).real(), 2);  // e = +-i
        }
        const double s2 = ck.state_scale_uS * ck.state_scale_uS;
        sens(r, state_col(k, 0)) += e_re / s2;
        sens(r, state_col(k, 1)) += e_re / s2;
        sens(r, state_col(k, 2)) += e_im / s2;
        sens(r, state_col(k, 3)) += e_im / s2;
      }
    }
  }
  return energy > 0 ? Eigen::MatrixXd(sens / energy) : sens;
}

}  // namespace xbar::kernel
