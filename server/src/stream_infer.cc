// ModelService.StreamInfer: one utterance, chunk by chunk, through the model's front end, the
// kernels (on the board's loop, its emulation or in software) and the head. The handler is the
// session's life; the session holds what the stream holds.
#include <fmt/format.h>

#include "model_service.h"
#include "request_checks.h"
#include "status.h"
#include "xbar/audio/front_end.h"

namespace xbar::server {

namespace {

void fill_result(const model::Forward& f, const model::ModelSpec& spec,
                 v1::StreamInferResponse* o) {
  for (double v : f.logits) o->add_logits(static_cast<float>(v));
  for (double v : f.probabilities) o->add_probabilities(static_cast<float>(v));
  o->set_label(static_cast<uint32_t>(f.label));
  if (static_cast<size_t>(f.label) < spec.classes.size()) {
    o->set_class_name(spec.classes[static_cast<size_t>(f.label)]);
  }
}

using Outputs = std::vector<Eigen::VectorXd>;  // per kernel, its new outputs

}  // namespace

// One StreamInfer call. The deployment's arrays are held shared for the whole utterance (no
// deploy lands between two chunks); the board is taken per chunk, so streams and other calls
// take turns. \context The call's gRPC thread only.
class ModelServiceImpl::StreamSession {
 public:
  using Stream = grpc::ServerReaderWriter<v1::StreamInferResponse, v1::StreamInferRequest>;

  StreamSession(ModelServiceImpl& service, grpc::ServerContext* ctx, Stream* stream)
      : s_(service),
        ctx_(ctx),
        stream_(stream),
        watch_(s_.idle_.watch([ctx] { ctx->TryCancel(); },
                              fmt::format("StreamInfer req={}", request_id(ctx)))) {}

  // The first message: the deployment, the path, the rate; the kernels' stream set up.
  grpc::Status open();
  // The chunks to the end of the utterance (or of the stream), answered as they come.
  grpc::Status run();
  // The last partial step and the kernels' flush: the final answer.
  grpc::Status finish();

 private:
  Result<void> take_board();
  // The board is held, and the deployment survived what happened while it was not.
  grpc::Status board_still_ours();
  // New front-end steps (steps x channels, step-major) through the encoder and the kernels.
  Result<Outputs> run_steps(const std::vector<float>& values);
  grpc::Status chunk(const v1::StreamInferRequest& msg);
  bool answer(const Outputs& y, bool final);
  void count_steps(double steps) const;

  ModelServiceImpl& s_;
  grpc::ServerContext* ctx_;
  Stream* stream_;
  IdleWatch::Entry watch_;
  v1::StreamInferRequest first_;
  bool on_board_ = false;  // hardware or emulated
  bool emulate_ = false;
  std::optional<Loaded> loaded_;
  std::optional<audio::StreamingFrontEnd> front_end_;
  std::optional<model::StreamingHead> head_;
  ArrayLocks::Hold hold_;
  BoardQueue::Turn turn_;
  std::unique_ptr<model::KernelStream> kernels_;
  // The board's epoch the stream started at: a restart loses the loop's state mid-utterance
  // (and maybe the arrays), so the stream ends there rather than go on from nothing.
  uint64_t epoch_ = 0;
  uint64_t total_samples_ = 0;
};

Result<void> ModelServiceImpl::StreamSession::take_board() {
  if (turn_) return {};
  auto t = s_.sched_.board.acquire(client_of(ctx_), limits_of(ctx_));
  if (!t) return std::unexpected(t.error());
  turn_ = std::move(*t);
  return {};
}

grpc::Status ModelServiceImpl::StreamSession::board_still_ours() {
  if (!on_board_) return grpc::Status::OK;
  if (auto t = take_board(); !t) return to_status(t.error());
  return s_.board_restarted_during(epoch_, first_.deployment());
}

void ModelServiceImpl::StreamSession::count_steps(double steps) const {
  if (on_board_ && !emulate_ && s_.metrics_ != nullptr) s_.metrics_->loop_steps.inc(steps);
}

grpc::Status ModelServiceImpl::StreamSession::open() {
  if (!stream_->Read(&first_)) return invalid_argument("StreamInfer: no request");
  watch_.touch();
  if (auto e = check_enums(first_); !e.ok()) return e;
  on_board_ = first_.path() != v1::INFER_SOFTWARE;
  emulate_ = first_.path() == v1::INFER_EMULATE;
  auto loaded = s_.load(first_.deployment(), on_board_);
  if (!loaded) return to_status(loaded.error());
  loaded_ = std::move(*loaded);
  const model::ModelSpec& spec = loaded_->spec;
  if (first_.sample_rate_hz() != static_cast<uint32_t>(spec.preprocessing.sample_rate_hz)) {
    return invalid_argument(fmt::format(
        "sample_rate_hz = {}: a stream must be at the model's rate, {} Hz (no resampling on a "
        "stream)",
        first_.sample_rate_hz(), spec.preprocessing.sample_rate_hz));
  }
  // The model's front end, fed as the samples arrive: the same steps as Infer's preprocessing
  // of the whole utterance (never padded; the block average not normalised).
  auto front_end = audio::StreamingFrontEnd::create(spec.preprocessing);
  if (!front_end) return to_status(front_end.error());
  front_end_.emplace(std::move(*front_end));
  head_.emplace(spec);
  if (!on_board_) {
    kernels_ = model::software_stream(loaded_->compiled);
    return grpc::Status::OK;
  }
  auto h = s_.sched_.arrays.shared(loaded_->arrays(), limits_of(ctx_));
  if (!h) return to_status(h.error());
  hold_ = std::move(*h);
  if (auto t = take_board(); !t) return to_status(t.error());
  epoch_ = s_.states_.verified_epoch();
  if (auto again = s_.still_servable(first_.deployment()); !again.ok()) return again;
  auto ks = emulate_ ? model::emulated_stream(s_.board_, loaded_->placed, 0)
                     : model::hardware_stream(s_.board_, loaded_->placed, 0);
  if (!ks) return to_status(ks.error());
  kernels_ = std::move(*ks);
  if (!kernels_->holds_board()) turn_.release();
  return grpc::Status::OK;
}

Result<Outputs> ModelServiceImpl::StreamSession::run_steps(const std::vector<float>& values) {
  const Eigen::VectorXd u =
      Eigen::Map<const Eigen::VectorXf>(values.data(), static_cast<Eigen::Index>(values.size()))
          .cast<double>();
  return kernels_->push(model::encode(loaded_->spec, u));
}

bool ModelServiceImpl::StreamSession::answer(const Outputs& y, bool final) {
  const int h = loaded_->spec.width();
  v1::StreamInferResponse r;
  const Eigen::Index n = y.empty() ? 0 : y.front().size();
  for (Eigen::Index t = 0; t < n; ++t) {
    Eigen::VectorXd step(h);
    for (int k = 0; k < h; ++k) step(k) = y[static_cast<size_t>(k)](t);
    head_->push(step);
  }
  r.set_steps(static_cast<uint32_t>(head_->steps()));
  if (first_.kernel_outputs()) {
    for (const Eigen::VectorXd& yk : y) {
      auto* s = r.add_kernel_outputs();
      for (double v : yk) s->add_values(static_cast<float>(v));
    }
  }
  if (head_->steps() > 0) fill_result(head_->result(), loaded_->spec, &r);
  r.set_final(final);
  const bool ok = stream_->Write(r);
  watch_.touch();
  return ok;
}

grpc::Status ModelServiceImpl::StreamSession::chunk(const v1::StreamInferRequest& msg) {
  const int rate = loaded_->spec.preprocessing.sample_rate_hz;
  // The limit before the samples are kept.
  total_samples_ += static_cast<uint64_t>(msg.samples_size());
  if (total_samples_ > static_cast<uint64_t>(rate) * 60) {
    return invalid_argument(fmt::format(
        "samples: {} samples at {} Hz = {:.1f} s so far: an utterance is allowed up to 60 s",
        total_samples_, rate, static_cast<double>(total_samples_) / rate));
  }
  // Refuses a non-finite sample (named by its index in the message) before taking any.
  auto values = front_end_->push(
      std::span<const float>(msg.samples().data(), static_cast<size_t>(msg.samples_size())));
  if (!values) return to_status(values.error());
  const size_t steps = values->size() / static_cast<size_t>(front_end_->channels());
  if (steps == 0) return grpc::Status::OK;
  if (auto b = board_still_ours(); !b.ok()) return b;
  auto y = run_steps(*values);
  if (on_board_) {
    if (auto e = s_.board_restarted_during(epoch_, first_.deployment()); !e.ok()) return e;
  }
  if (!kernels_->holds_board()) turn_.release();  // before writing: a slow reader waits alone
  if (!y) return to_status(y.error());
  count_steps(static_cast<double>(steps));
  if (!answer(*y, false)) return {grpc::StatusCode::CANCELLED, "client went away"};
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::StreamSession::run() {
  v1::StreamInferRequest msg = first_;
  while (true) {
    if (ctx_->IsCancelled()) return {grpc::StatusCode::CANCELLED, "stream cancelled"};
    if (auto c = chunk(msg); !c.ok()) return c;
    if (msg.end() || !stream_->Read(&msg)) return grpc::Status::OK;
    watch_.touch();
  }
}

grpc::Status ModelServiceImpl::StreamSession::finish() {
  if (ctx_->IsCancelled()) return {grpc::StatusCode::CANCELLED, "stream cancelled"};
  if (auto b = board_still_ours(); !b.ok()) return b;
  // The last, partial step (as Infer's preprocessing has it), then the kernels' flush.
  const std::vector<float> last = front_end_->finish();
  Result<Outputs> y =
      last.empty() ? Outputs(static_cast<size_t>(loaded_->spec.width())) : run_steps(last);
  if (y) {
    auto flushed = kernels_->finish();
    if (!flushed) {
      y = std::move(flushed);
    } else {
      for (size_t k = 0; k < y->size(); ++k) {
        Eigen::VectorXd& yk = (*y)[k];
        const Eigen::VectorXd& rest = (*flushed)[k];
        yk.conservativeResize(yk.size() + rest.size());
        yk.tail(rest.size()) = rest;
      }
    }
  }
  if (on_board_) {
    if (auto e = s_.board_restarted_during(epoch_, first_.deployment()); !e.ok()) return e;
  }
  turn_.release();
  if (!y) return to_status(y.error());
  if (!last.empty()) count_steps(1);
  if (head_->steps() == 0 && (y->empty() || y->front().size() == 0)) {
    return invalid_argument("samples: the utterance is empty (no samples before its end)");
  }
  answer(*y, true);
  return grpc::Status::OK;
}

grpc::Status ModelServiceImpl::StreamInfer(grpc::ServerContext* ctx,
                                           StreamSession::Stream* stream) {
  streams_.fetch_add(1);
  if (metrics_ != nullptr) metrics_->active_streams.inc();
  struct Count {
    std::atomic<int>& n;
    XbardMetrics* m;
    ~Count() {
      n.fetch_sub(1);
      if (m != nullptr) m->active_streams.dec();
    }
  } count{streams_, metrics_};
  StreamSession session(*this, ctx, stream);
  if (auto o = session.open(); !o.ok()) return o;
  if (auto r = session.run(); !r.ok()) return r;
  return session.finish();
}

}  // namespace xbar::server
