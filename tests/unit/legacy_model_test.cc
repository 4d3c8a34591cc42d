// Models without the log-mel front end (issue 18) keep working: the block-average reference
// models as models/reference held them before the log-mel models replaced them (copied to
// tests/legacy_model/ with their golden logits from models/refmodel.py, float64) still load as
// the daemon loads them (JSON -> xbar.v1.Model -> server::model_from_proto), have one channel
// per step and an encoder Linear(1 -> H), and the software path gives the same logits as before
// the front end had channels: model::encode with one channel is exactly w u + b.
//
// Tolerance: 1e-9 x (1 + |logit|), golden_model_test's against the same float64 reference (it
// measured 8e-15 for these models; a changed encoder sum or layer moves them by > 1e-3).
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "model_proto.h"
#include "xbar/kernel/kernel.h"
#include "xbar/model/model.h"

namespace xbar {
namespace {

const std::string kDir = std::string(XBAR_SOURCE_DIR) + "/tests/unit/legacy_model/";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Golden {
  struct Clip {
    std::string id;
    Eigen::VectorXd steps;
  };
  std::vector<Clip> clips;
  std::map<std::string, std::pair<std::string, std::vector<Eigen::VectorXd>>> models;
};

// tests/legacy_model/golden.json: the steps are float32 values in float32 shortest form, so
// each is read as a float and widened (the value refmodel.py computed on).
Golden golden() {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(slurp(kDir + "golden.json"), &s).ok());
  Golden g;
  for (const auto& c : s.fields().at("clips").list_value().values()) {
    const auto& f = c.struct_value().fields();
    const auto& steps = f.at("steps").list_value().values();
    Eigen::VectorXd u(steps.size());
    for (int t = 0; t < steps.size(); ++t) {
      u(t) = static_cast<double>(static_cast<float>(steps.Get(t).number_value()));
    }
    g.clips.push_back({f.at("id").string_value(), std::move(u)});
  }
  for (const auto& [name, v] : s.fields().at("models").struct_value().fields()) {
    const auto& f = v.struct_value().fields();
    std::vector<Eigen::VectorXd> logits;
    for (const auto& l : f.at("logits").list_value().values()) {
      Eigen::VectorXd x(l.list_value().values_size());
      for (int i = 0; i < x.size(); ++i) x(i) = l.list_value().values(i).number_value();
      logits.push_back(std::move(x));
    }
    g.models[name] = {f.at("file").string_value(), std::move(logits)};
  }
  return g;
}

TEST(LegacyModel, ABlockAverageModelLoadsAndGivesTheSameLogits) {
  const Golden g = golden();
  ASSERT_EQ(g.clips.size(), 3u);
  ASSERT_EQ(g.models.size(), 2u);
  for (const auto& [name, model] : g.models) {
    SCOPED_TRACE(name);
    v1::Model proto;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(slurp(kDir + model.first), &proto).ok());
    EXPECT_FALSE(proto.preprocessing().has_log_mel());
    auto spec = server::model_from_proto(proto);
    ASSERT_TRUE(spec.has_value()) << spec.error().message;
    EXPECT_FALSE(spec->preprocessing.log_mel.has_value());
    EXPECT_EQ(spec->channels(), 1);
    EXPECT_EQ(spec->encoder.weight.cols(), 1);
    EXPECT_EQ(spec->preprocessing.downsample, 64);
    EXPECT_EQ(spec->preprocessing.target_length, 871);
    // Written back, the preprocessing has no log_mel either.
    v1::AudioPreprocessing back;
    server::preprocessing_to_proto(spec->preprocessing, &back);
    EXPECT_FALSE(back.has_log_mel());
    EXPECT_EQ(back.downsample(), 64u);

    std::vector<kernel::CompiledKernel> compiled;
    for (const kernel::KernelSpec& k : spec->kernels.kernels) {
      compiled.push_back(kernel::compile(k, spec->kernels.window));
    }
    double worst = 0;
    for (size_t c = 0; c < g.clips.size(); ++c) {
      const Eigen::VectorXd& u = g.clips[c].steps;
      ASSERT_EQ(u.size(), 871);
      auto f = model::forward(*spec, u, model::software_kernels(compiled));
      ASSERT_TRUE(f.has_value()) << f.error().message;
      const Eigen::VectorXd& want = model.second[c];
      ASSERT_EQ(f->logits.size(), want.size());
      for (Eigen::Index i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(f->logits(i), want(i), 1e-9 * (1 + std::abs(want(i))))
            << g.clips[c].id << " logit " << i;
        worst = std::max(worst, std::abs(f->logits(i) - want(i)) / (1 + std::abs(want(i))));
      }
      // The encoder with one channel is exactly w u + b.
      const std::vector<Eigen::VectorXd> z = model::encode(*spec, u);
      for (int k = 0; k < spec->width(); ++k) {
        const Eigen::VectorXd direct =
            (spec->encoder.weight(k, 0) * u.array() + spec->encoder.bias(k)).matrix();
        EXPECT_EQ(z[static_cast<size_t>(k)], direct) << "kernel " << k;
      }
    }
    std::printf("[ legacy   ] %s: worst relative logit difference %g (float64 reference)\n",
                name.c_str(), worst);
  }
}

}  // namespace
}  // namespace xbar
