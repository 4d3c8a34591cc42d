// Test helper: a StreamInfer call opened by the test process, fed chunk by chunk (at the
// model's rate `rate_hz`, hardware path unless `path` says otherwise), so that a test can hold a
// deployment's arrays between two chunks. Shared by the tests that talk to a real xbard.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "xbar/v1/models.grpc.pb.h"

namespace xbar::testing {

/// The reference models' log-mel front end (models/frontend.py DEFAULT): audio at 8 kHz, 16
/// bands of 125..3800 Hz from a 256-point frame every 80 samples, 60 dB, the running-max
/// reference; `target_length` steps (0: the clip's own).
inline void set_reference_log_mel(v1::AudioPreprocessing* p, uint32_t target_length) {
  p->set_sample_rate_hz(8000);
  p->set_downsample(80);
  p->set_target_length(target_length);
  p->set_normalise(true);
  v1::LogMel* lm = p->mutable_log_mel();
  lm->set_bands(16);
  lm->set_fft_size(256);
  lm->set_low_hz(125);
  lm->set_high_hz(3800);
  lm->set_range_db(60);
}

/// DeployModel `req` read to its end: the deployment if one came, the final status in `st`,
/// the stage of every progress message in `stages` (if given).
inline v1::Deployment deploy_model(v1::ModelService::Stub& stub, grpc::ClientContext* ctx,
                                   const v1::DeployModelRequest& req, grpc::Status* st,
                                   std::vector<std::string>* stages = nullptr) {
  auto reader = stub.DeployModel(ctx, req);
  v1::DeployKernelResponse msg;
  v1::Deployment dep;
  while (reader->Read(&msg)) {
    if (msg.has_deployment()) dep = msg.deployment();
    if (msg.has_progress() && stages != nullptr) stages->push_back(msg.progress().stage());
  }
  *st = reader->Finish();
  return dep;
}

class Stream {
 public:
  Stream(const std::shared_ptr<grpc::Channel>& ch, const std::string& dep, int rate_hz = 48000,
         v1::InferPath path = v1::INFER_HARDWARE)
      : stub_(v1::ModelService::NewStub(ch)),
        rw_(stub_->StreamInfer(&ctx_)),
        dep_(dep),
        rate_hz_(rate_hz),
        path_(path) {}
  bool send(const std::vector<float>& s, size_t from, size_t to, bool end = false) {
    v1::StreamInferRequest r;
    if (first_) {
      r.set_deployment(dep_);
      r.set_sample_rate_hz(static_cast<uint32_t>(rate_hz_));
      r.set_path(path_);
      first_ = false;
    }
    for (size_t i = from; i < to; ++i) r.add_samples(s[i]);
    r.set_end(end);
    if (!rw_->Write(r)) return false;
    return rw_->Read(&last_);
  }
  grpc::Status finish() {
    rw_->WritesDone();
    v1::StreamInferResponse r;
    while (rw_->Read(&r)) last_ = r;
    return rw_->Finish();
  }
  const v1::StreamInferResponse& last() const { return last_; }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<v1::ModelService::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::StreamInferRequest, v1::StreamInferResponse>> rw_;
  std::string dep_;
  int rate_hz_;
  v1::InferPath path_;
  bool first_ = true;
  v1::StreamInferResponse last_;
};

}  // namespace xbar::testing
