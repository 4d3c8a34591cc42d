// The model around the kernels: validation, the forward pass, and the hardware path (the
// kernels as a closed loop on the twin) against the software path.
#include "xbar/model/model.h"

#include <gtest/gtest.h>

#include <numbers>
#include <random>

#include "xbar/audio/audio.h"
#include "xbar/audio/front_end.h"
#include "xbar/drivers/board.h"
#include "xbar/kernel/golden.h"

namespace xbar::model {
namespace {

using kernel::cd;

ModelSpec small_model(uint64_t seed, bool glu) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 0.5);
  ModelSpec m;
  m.name = "test";
  for (double dt : {0.1, 0.2, 0.5}) {
    kernel::KernelSpec k;
    k.log_dt = std::log(dt);
    for (int j = 0; j < 14; ++j) {
      k.a.push_back(cd(-0.5, std::numbers::pi * j));
      k.c.push_back(cd(z(rng), z(rng)));
    }
    m.kernels.kernels.push_back(k);
  }
  auto lin = [&](int out, int in) {
    Linear l;
    l.weight = Eigen::MatrixXd::NullaryExpr(out, in, [&] { return z(rng); });
    l.bias = Eigen::VectorXd::NullaryExpr(out, [&] { return z(rng); });
    return l;
  };
  m.encoder = lin(3, 1);
  m.glu = glu;
  m.mixing = lin(glu ? 6 : 3, 3);
  m.decoder = lin(2, 3);
  m.classes = {"zero", "one"};
  return m;
}

std::vector<kernel::CompiledKernel> compiled(const ModelSpec& m) {
  std::vector<kernel::CompiledKernel> out;
  for (const auto& k : m.kernels.kernels) out.push_back(kernel::compile(k, m.kernels.window));
  return out;
}

// `count` of the fidelity inputs of `steps` steps, peak-normalised like the preprocessing.
std::vector<Eigen::VectorXd> normalised_clips(int count, int steps) {
  std::vector<Eigen::VectorXd> clips;
  for (int c = 0; c < count; ++c) {
    Eigen::VectorXd u = kernel::fidelity_inputs(steps)[static_cast<size_t>(c)];
    clips.push_back(u / u.cwiseAbs().maxCoeff());
  }
  return clips;
}

// Sets every device of `array` exactly to the kernel's targets (the twin's fault injection with
// no fault), so the identity placement holds it as compiled.
testing::AssertionResult set_to_targets(Board& board, int array, const kernel::CompiledKernel& c) {
  for (int r = 0; r < 64; ++r) {
    for (int col = 0; col < 64; ++col) {
      if (!board.sim_inject_fault(array, r, col, wire::FaultKind::kNone, c.target_uS(r, col))) {
        return testing::AssertionFailure() << "array " << array << " (" << r << ", " << col << ")";
      }
    }
  }
  return testing::AssertionSuccess();
}

TEST(Model, ValidationNamesTheField) {
  ModelSpec m = small_model(1, false);
  EXPECT_TRUE(validate(m).has_value());
  m.encoder.weight.resize(2, 1);
  EXPECT_EQ(validate(m).error().message,
            "encoder.weight: 2 x 1, the model needs 3 x 1 (outputs x inputs)");
  m = small_model(1, true);
  m.mixing.weight.resize(3, 3);
  m.mixing.bias.resize(3);
  // The head's width M is the mixing layer's (4688f80): with the GLU its rows must be even.
  EXPECT_NE(validate(m).error().message.find("mixing.weight: 3 outputs: allowed 2M, an even"),
            std::string::npos)
      << validate(m).error().message;
  m.mixing.weight.resize(6, 2);
  m.mixing.bias.resize(6);
  EXPECT_NE(validate(m).error().message.find("mixing.weight: 6 x 2, the model needs 6 x 3"),
            std::string::npos)
      << validate(m).error().message;
  m = small_model(1, false);
  m.classes = {"zero"};
  EXPECT_EQ(validate(m).error().message,
            "classes: 1 names for 2 decoder outputs: one name per output");
  // Issue 16 item 9: no names at all was accepted, and Infer answered class_name "".
  m = small_model(1, false);
  m.classes.clear();
  EXPECT_EQ(validate(m).error().message,
            "classes: 0 names for 2 decoder outputs: one name per output");
  m = small_model(1, false);
  m.classes = {"zero", ""};
  EXPECT_EQ(validate(m).error().message, "classes[1]: 0 characters, allowed 1..64");
  m = small_model(1, false);
  m.classes = {"zero", "zero"};
  EXPECT_EQ(validate(m).error().message, "classes[1] = 'zero': the same as classes[0]");
  m = small_model(1, false);
  m.preprocessing.downsample = 0;
  EXPECT_EQ(validate(m).error().message, "preprocessing.downsample = 0: allowed 1..4096");
}

TEST(Model, ForwardPassByHand) {
  // H = 1, identity-like layers: the logits are the pooled GELU of the kernel output.
  ModelSpec m = small_model(2, false);
  const auto ck = compiled(m);
  Eigen::VectorXd u = kernel::fidelity_inputs(200)[0];
  auto f = forward(m, u, software_kernels(ck));
  ASSERT_TRUE(f.has_value());
  // Recompute by hand.
  Eigen::MatrixXd g(3, u.size());
  for (int k = 0; k < 3; ++k) {
    const Eigen::VectorXd zk = (m.encoder.weight(k, 0) * u.array() + m.encoder.bias(k)).matrix();
    const Eigen::VectorXd yk = kernel::run_ideal(ck[static_cast<size_t>(k)].kernel, zk);
    for (Eigen::Index t = 0; t < u.size(); ++t)
      g(k, t) = 0.5 * yk(t) * (1 + std::erf(yk(t) / std::sqrt(2.0)));
  }
  Eigen::MatrixXd mix = m.mixing.weight * g;
  mix.colwise() += m.mixing.bias;
  const Eigen::VectorXd logits = m.decoder.weight * mix.rowwise().mean() + m.decoder.bias;
  EXPECT_LT((f->logits - logits).norm(), 1e-9);
  EXPECT_NEAR(f->probabilities.sum(), 1.0, 1e-12);
  EXPECT_EQ(f->label, f->logits(1) > f->logits(0) ? 1 : 0);
  // GLU halves the mixing output.
  ModelSpec mg = small_model(2, true);
  auto fg = forward(mg, u, software_kernels(compiled(mg)));
  ASSERT_TRUE(fg.has_value());
  EXPECT_EQ(fg->logits.size(), 2);
}

// Kernel k of `m` on array k, every device set exactly to its target, with the loop's input
// bound from the encoder (what ModelService places).
testing::AssertionResult place_on_targets(Board& board, const ModelSpec& m,
                                          const std::vector<kernel::CompiledKernel>& ck,
                                          std::vector<PlacedKernel>* placed) {
  for (int k = 0; k < static_cast<int>(ck.size()); ++k) {
    const auto& c = ck[static_cast<size_t>(k)];
    if (auto r = set_to_targets(board, k, c); !r) return r;
    placed->push_back({c, kernel::Placement::identity(), k, c.target_uS});
    placed->back().u_max = input_bound(m, k);
  }
  return testing::AssertionSuccess();
}

TEST(Model, HardwarePathMatchesTheSoftwarePathOnTheIdealTwin) {
  // The ideal twin with a 16-bit ADC, conductances set exactly to the targets (identity
  // placement): the only difference is the loop's 8-bit state (docs/firmware.md §7).
  auto board = Board::open("sim:profile=ideal,adc_bits=16");
  ASSERT_TRUE(board.has_value());
  const ModelSpec m = small_model(3, false);
  const auto ck = compiled(m);
  std::vector<PlacedKernel> placed;
  for (int k = 0; k < 3; ++k) {
    const auto& c = ck[static_cast<size_t>(k)];
    ASSERT_TRUE(set_to_targets(**board, 2 - k, c));
    placed.push_back(
        {c, kernel::Placement::identity(), 2 - k, c.target_uS});  // kernel k on array 2-k
  }
  double board_ms = 0;
  auto hw = hardware_kernels(**board, placed, &board_ms);
  ASSERT_TRUE(hw.has_value()) << hw.error().message;
  int agree = 0;
  double worst = 0;
  for (int clip = 0; clip < 5; ++clip) {
    Eigen::VectorXd u = kernel::fidelity_inputs(871)[static_cast<size_t>(clip)];
    u /= u.cwiseAbs().maxCoeff();  // peak-normalised like the preprocessing
    auto sw = forward(m, u, software_kernels(ck));
    auto hwf = forward(m, u, *hw);
    ASSERT_TRUE(sw.has_value() && hwf.has_value());
    worst = std::max(worst, (hwf->logits - sw->logits).cwiseAbs().maxCoeff() /
                                std::max(1.0, sw->logits.cwiseAbs().maxCoeff()));
    agree += hwf->label == sw->label;
  }
  EXPECT_EQ(agree, 5);
  // Measured: 0.114 worst relative logit difference over the 5 clips with the loop's error
  // feedback (0.064 with plain rounding): the 8-bit loop state, docs/firmware.md §7. On the
  // reference models error feedback is what counts: on all 480 test clips the ideal twin
  // scores 72.50 % (2-bit, software 72.50) and 69.38 % (5-bit, software 79.58), against 71.88
  // and 51.46 with plain rounding.
  EXPECT_LT(worst, 0.15);

  EXPECT_GT(board_ms, 0.0);

  // Streaming the same clip in chunks of 20 ms (15 steps) through one open loop run gives the
  // one-shot run's result exactly (the same noise keys: tag 0, step t), on the board and in
  // software.
  Eigen::VectorXd u = kernel::fidelity_inputs(871)[0];
  u /= u.cwiseAbs().maxCoeff();
  auto one_shot_hw = hardware_kernels(**board, placed);  // its first run uses tag 0
  ASSERT_TRUE(one_shot_hw.has_value());
  const auto whole_hw = forward(m, u, *one_shot_hw);
  const auto whole_sw = forward(m, u, software_kernels(ck));
  ASSERT_TRUE(whole_hw.has_value() && whole_sw.has_value());
  for (bool hardware : {true, false}) {
    std::unique_ptr<KernelStream> ks;
    if (hardware) {
      auto hs = hardware_stream(**board, placed, 0);
      ASSERT_TRUE(hs.has_value()) << hs.error().message;
      ks = std::move(*hs);
    } else {
      ks = software_stream(ck);
    }
    StreamingHead head(m);
    auto feed = [&](const std::vector<Eigen::VectorXd>& y) {
      for (Eigen::Index t = 0; t < y.front().size(); ++t) {
        head.push(Eigen::Vector3d(y[0](t), y[1](t), y[2](t)));
      }
    };
    for (Eigen::Index start = 0; start < u.size(); start += 15) {
      const Eigen::Index k = std::min<Eigen::Index>(15, u.size() - start);
      auto y = ks->push(encode(m, u.segment(start, k)));
      ASSERT_TRUE(y.has_value()) << y.error().message;
      feed(*y);
    }
    auto y = ks->finish();
    ASSERT_TRUE(y.has_value());
    if (y->front().size() > 0) feed(*y);
    EXPECT_EQ(head.steps(), 871);
    const Forward& ref = hardware ? *whole_hw : *whole_sw;
    EXPECT_LT((head.result().logits - ref.logits).norm(), 1e-9 * (1 + ref.logits.norm()))
        << (hardware ? "hardware" : "software");
  }
}

// The board-exact reference (INFER_EMULATE): the loop's arithmetic host-stepped, one tagged VMM
// per step, gives the board loop's codes bit for bit: on the ideal twin, and on a noisy one too
// (the noise is keyed by tag and step, not by the request). Streamed in chunks it is the one
// long run.
TEST(Model, EmulatedPathEqualsTheBoardLoopBitForBit) {
  for (const char* uri : {"sim:profile=ideal,seed=1", "sim:profile=imssa,seed=4"}) {
    SCOPED_TRACE(uri);
    auto board = Board::open(uri);
    ASSERT_TRUE(board.has_value());
    const ModelSpec m = small_model(5, true);
    const auto ck = compiled(m);
    std::vector<PlacedKernel> placed;
    ASSERT_TRUE(place_on_targets(**board, m, ck, &placed));
    Eigen::VectorXd u = kernel::fidelity_inputs(400)[1];
    u /= u.cwiseAbs().maxCoeff();
    auto hw = hardware_kernels(**board, placed);
    double emulate_ms = 0;
    auto em = emulated_kernels(**board, placed, &emulate_ms);
    ASSERT_TRUE(hw.has_value() && em.has_value());
    auto fh = forward(m, u, *hw);
    auto fe = forward(m, u, *em);
    ASSERT_TRUE(fh.has_value() && fe.has_value()) << (fe ? "" : fe.error().message);
    EXPECT_GT(emulate_ms, 0.0);
    for (int k = 0; k < 3; ++k) {
      const Eigen::VectorXd& a = fh->kernel_outputs[static_cast<size_t>(k)];
      const Eigen::VectorXd& b = fe->kernel_outputs[static_cast<size_t>(k)];
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(a, b) << "kernel " << k << ": max difference "
                      << (a - b).cwiseAbs().maxCoeff();  // same codes, same arithmetic
      EXPECT_GT(a.cwiseAbs().maxCoeff(), 0.0);           // and not all zero
    }
    EXPECT_EQ(fh->logits, fe->logits);
    // A later call is a run with the next noise tag on both paths.
    auto fh2 = forward(m, u, *hw);
    auto fe2 = forward(m, u, *em);
    ASSERT_TRUE(fh2.has_value() && fe2.has_value());
    EXPECT_EQ(fh2->logits, fe2->logits);

    // In chunks of 37 steps: the same outputs as the whole clip (tag 0).
    auto es = emulated_stream(**board, placed, 0);
    ASSERT_TRUE(es.has_value()) << es.error().message;
    EXPECT_FALSE((*es)->holds_board());
    std::vector<Eigen::VectorXd> got(3);
    auto append = [&](const std::vector<Eigen::VectorXd>& y) {
      for (int k = 0; k < 3; ++k) {
        Eigen::VectorXd& g = got[static_cast<size_t>(k)];
        const Eigen::VectorXd& add = y[static_cast<size_t>(k)];
        g.conservativeResize(g.size() + add.size());
        g.tail(add.size()) = add;
      }
    };
    for (Eigen::Index start = 0; start < u.size(); start += 37) {
      const Eigen::Index n = std::min<Eigen::Index>(37, u.size() - start);
      auto y = (*es)->push(encode(m, u.segment(start, n)));
      ASSERT_TRUE(y.has_value()) << y.error().message;
      append(*y);
    }
    auto tail = (*es)->finish();
    ASSERT_TRUE(tail.has_value());
    append(*tail);
    for (int k = 0; k < 3; ++k) {
      EXPECT_EQ(got[static_cast<size_t>(k)], fe->kernel_outputs[static_cast<size_t>(k)]) << k;
    }
  }
}

// measure_fidelity: the clips on the board and in software, and the state clipping the plan's
// range predicts. A range a tenth of what the clips need clips often; the default never.
TEST(Model, FidelityPredictsClippingFromThePlansRange) {
  auto board = Board::open("sim:profile=ideal,seed=1");
  ASSERT_TRUE(board.has_value());
  const ModelSpec m = small_model(7, false);
  const auto ck = compiled(m);
  const std::vector<Eigen::VectorXd> clips = normalised_clips(4, 300);
  auto cal = calibrate(m, ck, clips);
  ASSERT_TRUE(cal.has_value());
  std::vector<PlacedKernel> placed;
  ASSERT_TRUE(place_on_targets(**board, m, ck, &placed));
  auto wide = measure_fidelity(**board, m, placed, clips);
  ASSERT_TRUE(wide.has_value()) << wide.error().message;
  EXPECT_EQ(wide->clips, 4);
  ASSERT_EQ(wide->state_clip_rate.size(), 3u);
  for (double r : wide->state_clip_rate) EXPECT_EQ(r, 0.0);  // 1.25x the synthetic peak
  EXPECT_GE(wide->label_agreement, 0.0);
  EXPECT_LE(wide->label_agreement, 1.0);
  EXPECT_GT(wide->logit_nrmse, 0.0);
  EXPECT_GT(wide->board_ms, 0.0);
  for (int k = 0; k < 3; ++k) {
    placed[static_cast<size_t>(k)].state_range =
        0.1 * cal->kernels[static_cast<size_t>(k)].state_max;
  }
  auto narrow = measure_fidelity(**board, m, placed, clips);
  ASSERT_TRUE(narrow.has_value()) << narrow.error().message;
  for (double r : narrow->state_clip_rate) EXPECT_GT(r, 0.01);
  EXPECT_GT(narrow->logit_nrmse, wide->logit_nrmse);  // clipping costs accuracy
  EXPECT_FALSE(measure_fidelity(**board, m, placed, {}).has_value());
}

TEST(Model, LoopInputRangeComesFromTheEncoder) {
  // A trained encoder drives the kernels far beyond the loop's default +-4 (the 2-bit reference
  // model reaches +-53). The loop takes its input range from the encoder (input_bound), so the
  // hardware kernels see the whole input; with the default range they clip it.
  auto board = Board::open("sim:profile=ideal,adc_bits=16");
  ASSERT_TRUE(board.has_value());
  ModelSpec m = small_model(3, false);
  m.encoder.weight *= 40.0;
  m.encoder.bias *= 40.0;
  const auto ck = compiled(m);
  std::vector<PlacedKernel> placed;
  for (int k = 0; k < 3; ++k) {
    const auto& c = ck[static_cast<size_t>(k)];
    ASSERT_TRUE(set_to_targets(**board, k, c));
    placed.push_back({c, kernel::Placement::identity(), k, c.target_uS});
    EXPECT_GT(input_bound(m, k), 4.0);
    EXPECT_NEAR(input_bound(m, k), std::abs(m.encoder.weight(k, 0)) + std::abs(m.encoder.bias(k)),
                1e-12);
  }
  Eigen::VectorXd u = kernel::fidelity_inputs(871)[1];
  u /= u.cwiseAbs().maxCoeff();
  auto sw = forward(m, u, software_kernels(ck));
  ASSERT_TRUE(sw.has_value());
  // Worst kernel-output error relative to each kernel's peak output.
  auto error = [&](const std::vector<PlacedKernel>& p) {
    auto hw = hardware_kernels(**board, p);
    EXPECT_TRUE(hw.has_value());
    if (!hw) return 1e9;
    auto f = forward(m, u, *hw);
    EXPECT_TRUE(f.has_value());
    if (!f) return 1e9;
    double worst = 0;
    for (size_t k = 0; k < 3; ++k) {
      const double peak = sw->kernel_outputs[k].cwiseAbs().maxCoeff();
      worst = std::max(worst,
                       (f->kernel_outputs[k] - sw->kernel_outputs[k]).cwiseAbs().maxCoeff() / peak);
    }
    return worst;
  };
  const double clipped = error(placed);  // u_max left at the default 4
  for (int k = 0; k < 3; ++k) placed[static_cast<size_t>(k)].u_max = input_bound(m, k);
  const double fitted = error(placed);
  // Measured: fitted 0.160 (the same at encoder scale 1 and 40: the loop's 8-bit state, worst
  // step), clipped 0.900. At encoder scale 1 the default range wastes state resolution
  // instead (0.702).
  EXPECT_LT(fitted, 0.25);
  EXPECT_GT(clipped, 3 * fitted);
}

}  // namespace
}  // namespace xbar::model

namespace xbar::model {
namespace {

// Issue 17 item 1: calibration from data. calibrate() measures what the kernels meet on clips
// (by hand here: the largest held state, output and input); validate() refuses missing, NaN,
// negative and too small ranges naming the field; and on a clip with a sustained input (the
// encoder's bias on a slow mode, which the synthetic inputs never hold) the calibrated plan
// stops the loop's state from clipping, so the board follows the software path closer.
TEST(Calibration, MeasuredOnClipsRefusedWhenBadAndUsedByTheLoop) {
  ModelSpec m = small_model(5, false);
  m.encoder.bias << 2.0, -1.5, 1.0;  // a large DC part on every kernel's input
  const auto ck = compiled(m);
  const std::vector<Eigen::VectorXd> clips = normalised_clips(3, 871);
  auto cal = calibrate(m, ck, clips);
  ASSERT_TRUE(cal.has_value()) << cal.error().message;
  ASSERT_EQ(cal->kernels.size(), 3u);
  EXPECT_EQ(cal->clips, 3);
  for (int k = 0; k < 3; ++k) {
    double s_max = 0, y_max = 0, z_max = 0;
    const kernel::CompiledKernel& c = ck[static_cast<size_t>(k)];
    for (const Eigen::VectorXd& u : clips) {
      const Eigen::VectorXd z = (m.encoder.weight(k, 0) * u.array() + m.encoder.bias(k)).matrix();
      z_max = std::max(z_max, z.cwiseAbs().maxCoeff());
      y_max = std::max(y_max, kernel::run_ideal(c.kernel, z).cwiseAbs().maxCoeff());
      std::vector<cd> x(static_cast<size_t>(c.n), 0.0);
      for (Eigen::Index t = 0; t < z.size(); ++t) {
        for (size_t j = 0; j < x.size(); ++j) {
          x[j] = c.kernel.a_bar[j] * x[j] + z(t);
          s_max = std::max({s_max, std::abs((c.mode_gain[j] * x[j]).real()),
                            std::abs((c.mode_gain[j] * x[j]).imag())});
        }
      }
    }
    const KernelRange& r = cal->kernels[static_cast<size_t>(k)];
    EXPECT_NEAR(r.state_max, std::max(s_max, least_state_range(c, z_max)), 1e-9 * s_max);
    EXPECT_GT(r.state_range, 0);
    EXPECT_LE(r.state_range, 1.1 * r.state_max * (1 + 1e-12));
    EXPECT_NEAR(r.input_max, z_max, 1e-12 * z_max);
    // run_ideal adds the skip term d z; the calibration's output is 2 Re(C x) alone.
    EXPECT_NEAR(r.output_max, y_max, 0.05 * y_max + std::abs(c.kernel.d) * z_max);
    EXPECT_GE(r.state_max, least_state_range(c, r.input_max));
  }
  EXPECT_FALSE(calibrate(m, ck, {}).has_value());

  // Validation: names the field and the range.
  ModelSpec v = m;
  v.calibration = *cal;
  EXPECT_TRUE(validate(v).has_value());
  v.calibration.kernels.pop_back();
  EXPECT_EQ(validate(v).error().message,
            "calibration.kernels: 2 ranges for 3 kernels: one per kernel");
  v.calibration = *cal;
  v.calibration.kernels[1].state_max = std::nan("");
  EXPECT_EQ(validate(v).error().message,
            "calibration.kernels[1].state_max = nan: allowed finite > 0");
  v.calibration = *cal;
  v.calibration.kernels[2].input_max = -1;
  EXPECT_EQ(validate(v).error().message,
            "calibration.kernels[2].input_max = -1: allowed finite > 0");
  v.calibration = *cal;
  v.calibration.kernels[0].state_max = 0.5 * least_state_range(ck[0], cal->kernels[0].input_max);
  auto small = validate(v);
  ASSERT_FALSE(small.has_value());
  EXPECT_NE(small.error().message.find("calibration.kernels[0].state_max = "), std::string::npos);
  EXPECT_NE(small.error().message.find("clips on every step"), std::string::npos);

  // The loop: the same ideal board (16-bit ADC, exact conductances), uncalibrated against
  // calibrated plans. The kernels' output error against software shrinks with the calibrated
  // range.
  auto board = Board::open("sim:profile=ideal,adc_bits=16");
  ASSERT_TRUE(board.has_value());
  std::vector<PlacedKernel> plain, calibrated;
  for (int k = 0; k < 3; ++k) {
    const auto& c = ck[static_cast<size_t>(k)];
    ASSERT_TRUE(set_to_targets(**board, k, c));
    PlacedKernel p{c, kernel::Placement::identity(), k, c.target_uS};
    p.u_max = input_bound(m, k);
    plain.push_back(p);
    p.state_max = cal->kernels[static_cast<size_t>(k)].state_max;
    p.state_range = cal->kernels[static_cast<size_t>(k)].state_range;
    calibrated.push_back(p);
  }
  double err_plain = 0, err_cal = 0;
  for (const Eigen::VectorXd& u : clips) {
    const auto sw = forward(m, u, software_kernels(ck));
    auto hp = hardware_kernels(**board, plain);
    auto hc = hardware_kernels(**board, calibrated);
    ASSERT_TRUE(sw && hp && hc);
    const auto fp = forward(m, u, *hp);
    const auto fc = forward(m, u, *hc);
    ASSERT_TRUE(fp && fc);
    // What the calibration optimises: each kernel's output on the board against software.
    for (int k = 0; k < 3; ++k) {
      const auto kk = static_cast<size_t>(k);
      err_plain += (fp->kernel_outputs[kk] - sw->kernel_outputs[kk]).squaredNorm();
      err_cal += (fc->kernel_outputs[kk] - sw->kernel_outputs[kk]).squaredNorm();
    }
  }
  std::printf("kernel output error against software: uncalibrated %.4g, calibrated %.4g\n",
              std::sqrt(err_plain), std::sqrt(err_cal));
  EXPECT_LT(err_cal, err_plain);
}

}  // namespace
}  // namespace xbar::model

namespace xbar::model {
namespace {

// Issue 18: a model whose input is the log-mel front end (16 bands per step): the encoder is
// Linear(16 -> 3).
ModelSpec log_mel_model(uint64_t seed) {
  ModelSpec m = small_model(seed, true);
  m.preprocessing = Preprocessing{.sample_rate_hz = 8000,
                                  .downsample = 80,
                                  .target_length = 0,
                                  .normalise = true,
                                  .log_mel = LogMel{16, 256, 125, 3800, 60}};
  std::mt19937_64 rng(seed + 100);
  std::normal_distribution<double> z(0, 0.25);
  m.encoder.weight = Eigen::MatrixXd::NullaryExpr(3, 16, [&] { return z(rng); });
  return m;
}

// A spoken-like clip at 8 kHz: a vowel with a moving formant, louder and louder.
audio::Audio vowel_clip(int samples, double f0) {
  audio::Audio a{std::vector<float>(static_cast<size_t>(samples)), 8000};
  for (int i = 0; i < samples; ++i) {
    const double t = i / 8000.0;
    const double env = std::min(1.0, 0.2 + 3 * t);
    double v = 0;
    for (int h = 1; h <= 12; ++h) {
      const double f = h * f0;
      const double formant = 500 + 1500 * t;  // the resonance moves up
      v += std::exp(-std::pow((f - formant) / 400, 2)) * std::sin(2 * std::numbers::pi * f * t);
    }
    a.samples[static_cast<size_t>(i)] = static_cast<float>(0.3 * env * v);
  }
  return a;
}

Eigen::VectorXd as_input(const std::vector<float>& v) {
  return Eigen::Map<const Eigen::VectorXf>(v.data(), static_cast<Eigen::Index>(v.size()))
      .cast<double>();
}

TEST(LogMelModel, TheEncoderTakesOneInputPerBand) {
  ModelSpec m = log_mel_model(1);
  ASSERT_TRUE(validate(m).has_value()) << validate(m).error().message;
  EXPECT_EQ(m.channels(), 16);
  // z_k[t] = sum_f W(k, f) u[t F + f] + b_k, by hand.
  Eigen::VectorXd u(5 * 16);
  for (Eigen::Index i = 0; i < u.size(); ++i)
    u(i) = std::abs(std::sin(0.3 * static_cast<double>(i)));
  const std::vector<Eigen::VectorXd> z = encode(m, u);
  ASSERT_EQ(z.size(), 3u);
  for (int k = 0; k < 3; ++k) {
    ASSERT_EQ(z[static_cast<size_t>(k)].size(), 5);
    for (int t = 0; t < 5; ++t) {
      double want = m.encoder.bias(k);
      for (int f = 0; f < 16; ++f) want += m.encoder.weight(k, f) * u(t * 16 + f);
      EXPECT_NEAR(z[static_cast<size_t>(k)](t), want, 1e-12);
    }
    // The loop's input bound: every feature in [0, 1].
    EXPECT_NEAR(input_bound(m, k),
                m.encoder.weight.row(k).cwiseAbs().sum() + std::abs(m.encoder.bias(k)), 1e-12);
  }
  // One channel: exactly w u + b, as before the front end had channels.
  const ModelSpec one = small_model(1, false);
  const Eigen::VectorXd u1 = kernel::fidelity_inputs(50)[0];
  for (int k = 0; k < 3; ++k) {
    const Eigen::VectorXd want =
        (one.encoder.weight(k, 0) * u1.array() + one.encoder.bias(k)).matrix();
    EXPECT_EQ(encode(one, u1)[static_cast<size_t>(k)], want);
  }

  // Validation names the field and the shape it needs.
  ModelSpec bad = m;
  bad.encoder.weight.resize(3, 1);
  EXPECT_EQ(validate(bad).error().message,
            "encoder.weight: 3 x 1, the model needs 3 x 16 (outputs x inputs: one input per "
            "channel of a step, preprocessing.log_mel.bands = 16)");
  bad = small_model(1, false);
  bad.encoder.weight.resize(3, 16);
  bad.encoder.weight.setZero();
  EXPECT_EQ(validate(bad).error().message,
            "encoder.weight: 3 x 16, the model needs 3 x 1 (outputs x inputs: one input per "
            "channel of a step, the block average: preprocessing.log_mel is unset)");
  bad = m;
  bad.preprocessing.log_mel->fft_size = 64;  // shorter than the hop
  EXPECT_EQ(validate(bad).error().message,
            "preprocessing.log_mel.fft_size = 64: allowed >= preprocessing.downsample = 80 (a "
            "frame covers its step's hop)");
  bad = m;
  bad.calibration.fidelity_clips = {Eigen::VectorXd::Constant(32, 0.5),
                                    Eigen::VectorXd::Constant(33, 0.5)};
  EXPECT_EQ(validate(bad).error().message,
            "calibration.fidelity_clips[1]: 33 values, allowed a multiple of the 16 channels of a "
            "step (preprocessing.log_mel.bands; a clip is steps x bands values, step-major)");
  bad.calibration.fidelity_clips = {Eigen::VectorXd::Constant(32, 0.5)};
  EXPECT_TRUE(validate(bad).has_value());

  // The passes refuse an input that is not whole steps.
  const auto ck = compiled(m);
  auto f = forward(m, Eigen::VectorXd::Constant(40, 0.5), software_kernels(ck));
  ASSERT_FALSE(f.has_value());
  EXPECT_EQ(f.error().message,
            "input: 40 values, allowed a multiple of the model's 16 channels per step (steps x "
            "channels, step-major)");
  auto cal =
      calibrate(m, ck, {Eigen::VectorXd::Constant(32, 0.5), Eigen::VectorXd::Constant(40, 0.5)});
  ASSERT_FALSE(cal.has_value());
  EXPECT_EQ(cal.error().message,
            "calibrate: clip 1: 40 values, allowed a multiple of the model's 16 channels per step "
            "(steps x channels, step-major)");
  EXPECT_FALSE(measure_mode_ranges(m, ck, {Eigen::VectorXd::Constant(40, 0.5)}).has_value());
}

// A log-mel model end to end on the driver: audio -> preprocess -> forward on the board's loop,
// the emulation and software (labels agree on the ideal twin; hardware and emulation bit for
// bit), calibration on log-mel clips, and a stream (StreamingFrontEnd in random chunks ->
// encode -> software_stream -> StreamingHead) that ends at the whole clip's result.
TEST(LogMelModel, RunsOnTheBoardAndStreamsLikeTheWholeClip) {
  const ModelSpec m = log_mel_model(4);
  const auto ck = compiled(m);
  std::vector<Eigen::VectorXd> clips;
  for (double f0 : {110.0, 150.0, 220.0}) {
    auto v = audio::preprocess(vowel_clip(8000 / 2 + 37, f0), m.preprocessing);
    ASSERT_TRUE(v.has_value()) << v.error().message;
    ASSERT_EQ(v->size(), 51u * 16u);  // ceil(4037 / 80) steps of 16 bands
    clips.push_back(as_input(*v));
  }
  auto cal = calibrate(m, ck, clips);
  ASSERT_TRUE(cal.has_value()) << cal.error().message;
  for (const KernelRange& r : cal->kernels) {
    EXPECT_GT(r.input_max, 0.0);
    EXPECT_TRUE(std::isfinite(r.state_max) && std::isfinite(r.state_range));
  }

  auto board = Board::open("sim:profile=ideal,seed=2");
  ASSERT_TRUE(board.has_value());
  std::vector<PlacedKernel> placed;
  ASSERT_TRUE(place_on_targets(**board, m, ck, &placed));
  for (int k = 0; k < 3; ++k) {
    EXPECT_LE(cal->kernels[static_cast<size_t>(k)].input_max, input_bound(m, k));
  }
  auto hw = hardware_kernels(**board, placed);
  auto em = emulated_kernels(**board, placed);
  ASSERT_TRUE(hw.has_value() && em.has_value());
  for (const Eigen::VectorXd& u : clips) {
    auto fs = forward(m, u, software_kernels(ck));
    auto fh = forward(m, u, *hw);
    auto fe = forward(m, u, *em);
    ASSERT_TRUE(fs && fh && fe);
    EXPECT_EQ(fh->kernel_outputs[0].size(), 51);
    EXPECT_EQ(fh->logits, fe->logits);  // the board-exact reference, bit for bit
    EXPECT_EQ(fh->label, fs->label)
        << "hardware " << fh->logits.transpose() << ", software " << fs->logits.transpose();
  }
  auto fid = measure_fidelity(**board, m, placed, clips);
  ASSERT_TRUE(fid.has_value()) << fid.error().message;
  EXPECT_EQ(fid->label_agreement, 1.0);

  // The stream: the same steps, so the same result.
  const audio::Audio a = vowel_clip(8000 / 2 + 37, 150.0);
  auto fe = audio::StreamingFrontEnd::create(m.preprocessing);
  ASSERT_TRUE(fe.has_value());
  auto ks = software_stream(ck);
  StreamingHead head(m);
  auto feed = [&](const std::vector<Eigen::VectorXd>& y) {
    for (Eigen::Index t = 0; t < y.front().size(); ++t) {
      head.push(Eigen::Vector3d(y[0](t), y[1](t), y[2](t)));
    }
  };
  std::mt19937 rng(7);
  for (size_t at = 0; at < a.samples.size();) {
    const size_t n = std::min<size_t>(rng() % 400, a.samples.size() - at);
    auto v = fe->push(std::span<const float>(a.samples).subspan(at, n));
    ASSERT_TRUE(v.has_value());
    at += n;
    if (v->empty()) continue;
    auto y = ks->push(encode(m, as_input(*v)));
    ASSERT_TRUE(y.has_value());
    feed(*y);
  }
  const std::vector<float> last = fe->finish();
  ASSERT_EQ(last.size(), 16u);  // 37 samples: the partial last step
  auto y = ks->push(encode(m, as_input(last)));
  ASSERT_TRUE(y.has_value());
  feed(*y);
  EXPECT_EQ(head.steps(), 51);
  auto whole = forward(m, clips[1], software_kernels(ck));
  ASSERT_TRUE(whole.has_value());
  EXPECT_LT((head.result().logits - whole->logits).norm(), 1e-9 * (1 + whole->logits.norm()));
}

}  // namespace
}  // namespace xbar::model
