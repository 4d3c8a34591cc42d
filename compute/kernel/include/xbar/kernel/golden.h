// Golden software models of a kernel (Eigen, double): the ideal S4D recurrence, its convolution
// kernel, and the crossbar-as-programmed model that runs the recurrence through a 64x64
// conductance matrix with the board's feedback routing. The kernel fidelity metric
// (docs/kernels.md) compares the two over a fixed set of input sequences.
#pragma once

#include <Eigen/Core>
#include <vector>

#include "xbar/kernel/kernel.h"

namespace xbar::kernel {

/// x_t = a_bar x_{t-1} + u_t (x_{-1} = 0), y_t = 2 Re(c_bar . x_t) + d u_t.
Eigen::VectorXd run_ideal(const DiscreteKernel& k, const Eigen::VectorXd& u);

/// K_l = 2 Re(c_bar . a_bar^l), l = 0..length-1 (y = K * u + d u).
Eigen::VectorXd convolution_kernel(const DiscreteKernel& k, int length);

/// Runs the kernel through the physical conductances `g_uS` (64x64) as the array computes it:
/// per step the rows carry [expand(u_t * input_gain); expand(x_{t-1})] (positive and negative
/// parts), the columns sum G^T v, the state columns' differential pairs divided by the state
/// scale give x_t and are routed back, the output columns give y_{t-1} (eq. 7). The returned
/// y is aligned with run_ideal (the one-step lag is hidden): y_t = 2 (i_r+ - i_r-) / s_out + d u_t.
Eigen::VectorXd run_crossbar(const CompiledKernel& ck, const Placement& p,
                             const Eigen::MatrixXd& g_uS, const Eigen::VectorXd& u);

/// The state recurrence the conductances implement, as a real 2N x 2N matrix over
/// (Re x_0, Im x_0, Re x_1, ...): column j is the state columns' differential response to a
/// unit state component j (the mean of its positive and negative row). Its spectral radius
/// must stay below 1, or the kernel as programmed is unstable.
Eigen::MatrixXd effective_state_matrix(const CompiledKernel& ck, const Placement& p,
                                       const Eigen::MatrixXd& g_uS);
double spectral_radius(const Eigen::MatrixXd& m);

/// The fixed input set of the fidelity metric (docs/kernels.md): deterministic, `length`
/// steps each (871 = the paper's clips): white noise, low-pass noise (AR(1), rho 0.95), a
/// chirp, a step, and speech-like bursts (noise under a syllable envelope); unit RMS.
std::vector<Eigen::VectorXd> fidelity_inputs(int length = 871);

/// sqrt(sum (y - y_ref)^2 / sum y_ref^2) over all sequences.
double nrmse(const std::vector<Eigen::VectorXd>& y, const std::vector<Eigen::VectorXd>& y_ref);

/// NRMSE of the crossbar-as-programmed model with `g_uS` vs the ideal recurrence of the
/// compiled (quantized) kernel, over fidelity_inputs().
double fidelity_nrmse(const CompiledKernel& ck, const Placement& p, const Eigen::MatrixXd& g_uS,
                      const std::vector<Eigen::VectorXd>& inputs);

/// NRMSE of the quantized kernel's ideal outputs vs the unquantized kernel's.
double quantization_nrmse(const CompiledKernel& ck, const std::vector<Eigen::VectorXd>& inputs);

/// Linearised cost of a conductance error: sens(r, c) * delta_uS^2 is the squared NRMSE a
/// device error of delta_uS at logical (row r, column c) adds (to first order), over the
/// input set. Zero on spare rows and columns and on rows/columns that carry nothing.
Eigen::MatrixXd error_sensitivity(const CompiledKernel& ck,
                                  const std::vector<Eigen::VectorXd>& inputs);

}  // namespace xbar::kernel
