// The API's contract under a hostile client and a crashing board, through a real xbard (and,
// for board restarts, a real xbar-fwsim), as a black-box client generated from the protos
// meets it. One test per class of defect found by issue 16:
//   - a request never runs on what replaced its deployment;
//   - a board that restarted is read back before it is trusted again;
//   - a refused request (bad input, an unknown enum value, a deadline that passed while it
//     waited) changes nothing: no pulse, no deployment state;
//   - a cancelled operation is recorded as cancelled; SIGTERM cancels detached ones;
//   - a deploy whose failure the record cannot take is still failed to every caller;
//   - messages show the values as sent; the Bearer scheme is case-insensitive.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <set>
#include <thread>

#include "infer_stream.h"
#include "process.h"
#include "xbar/v1/arrays.grpc.pb.h"
#include "xbar/v1/board.grpc.pb.h"
#include "xbar/v1/kernels.grpc.pb.h"
#include "xbar/v1/models.grpc.pb.h"
#include "xbar/v1/operations.grpc.pb.h"

namespace xbar {
namespace {

namespace fs = std::filesystem;
using testing::eventually;
using testing::Process;
using testing::read_file;
using testing::TempDir;

constexpr int kRate = 48000;  // models/example-model.json

v1::Model example_model() {
  v1::Model m;
  const std::string json = read_file(std::string(XBAR_SOURCE_DIR) + "/models/example-model.json");
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &m).ok());
  return m;
}

std::vector<float> chirp(int n) {
  std::vector<float> s(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t = i / double(kRate);
    s[static_cast<size_t>(i)] = static_cast<float>(0.5 * std::sin(2 * M_PI * (300 + 900 * t) * t));
  }
  return s;
}

std::string operation_id(const grpc::ClientContext& ctx) {
  const auto& md = ctx.GetServerInitialMetadata();
  auto it = md.find("x-operation-id");
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

class ApiContract : public ::testing::Test {
 protected:
  /// xbard on `board` (default: the embedded ideal twin), on a Unix socket. `wrap` runs it
  /// through another command (e.g. into a mount namespace); `extra` adds flags.
  void start(const std::string& board = "sim:profile=ideal", std::vector<std::string> extra = {},
             std::vector<std::string> wrap = {}) {
    addr_ = "unix:" + (dir_.path() / "xbard.sock").string();
    state_ = dir_.path() / "state";
    std::vector<std::string> argv = wrap;
    for (const std::string& a :
         {std::string(XBARD_PATH), std::string("--board"), board, std::string("--listen"), addr_,
          std::string("--state-dir"), state_.string()}) {
      argv.push_back(a);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    xbard_ = std::make_unique<Process>(argv, dir_.path() / "xbard.log");
    ASSERT_TRUE(eventually([&] { return contains(log(), "serving"); }, std::chrono::seconds(60)))
        << log();
    channel_ = grpc::CreateChannel(addr_, grpc::InsecureChannelCredentials());
    kernels_ = v1::KernelService::NewStub(channel_);
    models_ = v1::ModelService::NewStub(channel_);
    arrays_ = v1::ArrayService::NewStub(channel_);
    board_ = v1::BoardService::NewStub(channel_);
    ops_ = v1::OperationService::NewStub(channel_);
  }

  std::string log() const { return read_file(dir_.path() / "xbard.log"); }

  static std::unique_ptr<grpc::ClientContext> context(
      std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + timeout);
    return c;
  }

  /// Deploys `m` (replace); returns the deployment (state ready expected on the ideal twin).
  v1::Deployment deploy(const v1::Model& m, const std::vector<uint32_t>& arrays = {}) {
    v1::DeployModelRequest req;
    *req.mutable_model() = m;
    req.mutable_options()->set_replace(true);
    for (uint32_t a : arrays) req.mutable_options()->add_arrays(a);
    grpc::Status st;
    const v1::Deployment dep = deploy_request(req, &st);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return dep;
  }

  /// DeployModel to the end: the deployment if one came, the status in `st`, the stages of
  /// the progress messages in `stages` (if given).
  v1::Deployment deploy_request(const v1::DeployModelRequest& req, grpc::Status* st,
                                std::vector<std::string>* stages = nullptr) {
    auto ctx = context();
    return testing::deploy_model(*models_, ctx.get(), req, st, stages);
  }

  v1::Deployment get(const std::string& id) {
    auto ctx = context();
    v1::GetDeploymentRequest r;
    r.set_id(id);
    v1::Deployment d;
    const grpc::Status st = kernels_->GetDeployment(ctx.get(), r, &d);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return d;
  }

  uint64_t pulses_applied() {
    auto ctx = context();
    v1::BoardStatus s;
    EXPECT_TRUE(board_->GetBoardStatus(ctx.get(), {}, &s).ok());
    return s.pulses_applied();
  }

  grpc::Status infer(const std::string& dep, v1::InferResponse* out,
                     v1::InferPath path = v1::INFER_HARDWARE, bool kernel_outputs = false) {
    v1::InferRequest r;
    r.set_deployment(dep);
    r.set_kernel_outputs(kernel_outputs);
    r.set_sample_rate_hz(kRate);
    for (float v : chirp(kRate / 2)) r.add_samples(v);
    r.set_path(path);
    auto ctx = context();
    return models_->Infer(ctx.get(), r, out);
  }

  /// ProgramArray to the end; the final status, the report in `report` if one came.
  grpc::Status program(const v1::ProgramArrayRequest& req, grpc::ClientContext* ctx,
                       v1::ProgramReport* report = nullptr) {
    auto reader = arrays_->ProgramArray(ctx, req);
    v1::ProgramArrayResponse msg;
    while (reader->Read(&msg)) {
      if (msg.has_report() && report != nullptr) *report = msg.report();
    }
    return reader->Finish();
  }

  static v1::ProgramArrayRequest program_request(uint32_t array, float target_uS) {
    v1::ProgramArrayRequest r;
    r.set_array(array);
    r.set_rows(64);
    r.set_cols(64);
    for (int i = 0; i < 64 * 64; ++i) r.add_target_us(target_uS + static_cast<float>(i % 7));
    return r;
  }

  TempDir dir_;
  fs::path state_;
  std::string addr_;
  std::unique_ptr<Process> xbard_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KernelService::Stub> kernels_;
  std::unique_ptr<v1::ModelService::Stub> models_;
  std::unique_ptr<v1::ArrayService::Stub> arrays_;
  std::unique_ptr<v1::BoardService::Stub> board_;
  std::unique_ptr<v1::OperationService::Stub> ops_;
};

using testing::Stream;

// Issue 16 item 1: with a stream holding deployment A's arrays and a DeployModel of B
// (replace) waiting for them, an Infer on A was held until B finished and then answered OK from
// B's kernels. Whenever it is answered, it must not be OK: ABORTED if it waited while A was
// replaced, FAILED_PRECONDITION if A was already stale when it came; the message names B.
TEST_F(ApiContract, AnInferOnAReplacedDeploymentNeverRunsOnTheReplacement) {
  start();
  const v1::Model model = example_model();
  const v1::Deployment a = deploy(model);
  ASSERT_EQ(a.state(), "ready") << a.message();
  EXPECT_EQ(a.state_code(), v1::DEPLOYMENT_STATE_READY);  // the enum and the word agree
  v1::InferResponse before;
  ASSERT_TRUE(infer(a.id(), &before).ok());

  Stream stream(channel_, a.id());
  const auto s = chirp(kRate / 5);
  ASSERT_TRUE(stream.send(s, 0, 960));  // A's arrays are held shared

  // B: the same model with other kernels (a different answer if it ran), replacing A.
  v1::Model other = model;
  for (auto& k : *other.mutable_kernel_set()->mutable_kernels()) {
    k.mutable_continuous()->set_log_dt(k.continuous().log_dt() + 1.0);
  }
  grpc::ClientContext bctx;
  v1::DeployModelRequest breq;
  *breq.mutable_model() = other;
  breq.mutable_options()->set_replace(true);
  auto b = models_->DeployModel(&bctx, breq);
  v1::DeployKernelResponse msg;
  ASSERT_TRUE(b->Read(&msg));  // compiled: now B waits for A's arrays

  // Infers on A, one-shot and streamed, sent while B waits (they queue behind B).
  std::vector<std::future<grpc::Status>> infers;
  std::vector<v1::InferResponse> answers(4);
  for (int i = 0; i < 3; ++i) {
    infers.push_back(std::async(std::launch::async, [&, i] { return infer(a.id(), &answers[i]); }));
  }
  auto streamed = std::async(std::launch::async, [&] {
    Stream late(channel_, a.id());
    late.send(s, 0, 960, true);
    return late.finish();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let them queue (either way the
                                                                // assertions below must hold)
  ASSERT_TRUE(stream.send(s, 960, s.size(), true));
  ASSERT_TRUE(stream.finish().ok());
  v1::Deployment bdep;
  while (b->Read(&msg)) {
    if (msg.has_deployment()) bdep = msg.deployment();
  }
  ASSERT_TRUE(b->Finish().ok());
  ASSERT_FALSE(bdep.id().empty());

  // OK only with A's own answer (one that ran before B took the arrays: the ideal twin is
  // deterministic); otherwise a clear refusal naming both.
  int refused = 0;
  auto check = [&](const grpc::Status& st, const v1::InferResponse* answer) {
    if (st.ok()) {
      ASSERT_NE(answer, nullptr) << "a stream answered OK after " << a.id() << " was replaced";
      ASSERT_EQ(answer->logits_size(), before.logits_size());
      for (int i = 0; i < before.logits_size(); ++i) {
        EXPECT_NEAR(answer->logits(i), before.logits(i), 1e-4 + 1e-4 * std::abs(before.logits(i)))
            << "answered OK, but not with " << a.id() << "'s kernels";
      }
      return;
    }
    ++refused;
    EXPECT_TRUE(st.error_code() == grpc::StatusCode::ABORTED ||
                st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
        << st.error_code() << " " << st.error_message();
    EXPECT_TRUE(contains(st.error_message(), bdep.id())) << st.error_message();
    EXPECT_TRUE(contains(st.error_message(), a.id())) << st.error_message();
  };
  for (size_t i = 0; i < infers.size(); ++i) check(infers[i].get(), &answers[i]);
  const grpc::Status streamed_status = streamed.get();
  if (!streamed_status.ok()) check(streamed_status, nullptr);
  std::printf("%d of 4 requests sent while %s was being replaced were refused\n", refused,
              a.id().c_str());
  // And afterwards, plainly.
  v1::InferResponse after;
  const grpc::Status late = infer(a.id(), &after);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << late.error_message();
  EXPECT_EQ(get(a.id()).state(), "stale");
  EXPECT_EQ(get(a.id()).state_code(), v1::DEPLOYMENT_STATE_STALE);
  // The software path needs no array: it answers for a stale deployment, from A's own model.
  v1::InferResponse soft;
  ASSERT_TRUE(infer(a.id(), &soft, v1::INFER_SOFTWARE).ok());
  ASSERT_TRUE(infer(bdep.id(), &after).ok());
}

// Issue 16 item 2: a board process killed and restarted (same serial: a power cycle, as far as
// xbard can tell) left the deployment `ready`, its read-backs 40 uS off and Infer answering OK
// with flipped labels. Now: no hardware answer is OK until the arrays are read back, and the
// read-back finds the deployment lost (a fresh twin holds none of it).
TEST_F(ApiContract, ABoardThatRestartedIsReadBackBeforeItServesAgain) {
  const fs::path sock = dir_.path() / "fwsim.sock";
  const std::vector<std::string> fwsim_argv = {
      XBAR_FWSIM_PATH, "--profile", "ideal", "--seed", "5", "--listen", "unix:" + sock.string()};
  auto fwsim = std::make_unique<Process>(fwsim_argv, dir_.path() / "fwsim.log");
  ASSERT_TRUE(eventually([&] { return fs::exists(sock); })) << fwsim->output();
  start("unix:" + sock.string());
  const v1::Deployment a = deploy(example_model());
  ASSERT_EQ(a.state(), "ready") << a.message();
  v1::InferResponse r;
  ASSERT_TRUE(infer(a.id(), &r).ok());

  fwsim->kill_hard();
  fs::remove(sock);
  fwsim = std::make_unique<Process>(fwsim_argv, dir_.path() / "fwsim2.log");
  ASSERT_TRUE(eventually([&] { return fs::exists(sock); })) << fwsim->output();

  // From the restart on, no hardware inference on A is OK; the deployment ends `lost`.
  std::string state;
  ASSERT_TRUE(eventually(
      [&] {
        v1::InferResponse out;
        const grpc::Status st = infer(a.id(), &out);
        EXPECT_FALSE(st.ok()) << "answered OK on a board that restarted";
        EXPECT_TRUE(st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                    st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
            << st.error_code() << " " << st.error_message() << "\n"
            << log().substr(log().size() > 4000 ? log().size() - 4000 : 0);
        state = get(a.id()).state();
        return state == "lost";
      },
      std::chrono::seconds(60)))
      << state << "\n"
      << log();
  const v1::Deployment lost = get(a.id());
  EXPECT_TRUE(contains(lost.message(), "after a board restart")) << lost.message();
  EXPECT_TRUE(contains(log(), "restarted or was re-opened")) << log();
  // Deployed again, it serves.
  const v1::Deployment again = deploy(example_model());
  ASSERT_EQ(again.state(), "ready") << again.message();
  EXPECT_TRUE(infer(again.id(), &r).ok());
}

// Issue 16 items 3, 11 and 12: a ProgramArray refused for a NaN target, a target of 251 uS,
// tol_rel 1.5 or max_rounds 1001 made the deployment on the array stale; so did ProgramArray
// and ScanFaults calls whose deadline passed while they waited. A refusal changes nothing.
TEST_F(ApiContract, RefusedChangesLeaveTheBoardAndEveryDeploymentAsTheyWere) {
  start();
  const v1::Deployment a = deploy(example_model());
  ASSERT_EQ(a.state(), "ready") << a.message();
  const uint32_t array = a.placements(0).array();
  const uint64_t pulses = pulses_applied();

  struct Case {
    std::string what;
    v1::ProgramArrayRequest req;
    std::string message;  // expected in the error
  };
  std::vector<Case> cases;
  auto base = program_request(array, 50);
  Case nan{"NaN target", base, "target[0][3] = nan uS"};
  nan.req.set_target_us(3, std::numeric_limits<float>::quiet_NaN());
  cases.push_back(nan);
  Case high{"251 uS", base, "target[0][5] = 251 uS: allowed"};
  high.req.set_target_us(5, 251);
  cases.push_back(high);
  Case rel{"tol_rel 1.5", base, "tol_rel = 1.5: allowed 0..1"};
  rel.req.set_tol_rel(1.5);
  cases.push_back(rel);
  Case rounds{"max_rounds 1001", base, "max_rounds = 1001: allowed 1..1000"};
  rounds.req.set_max_rounds(1001);
  cases.push_back(rounds);
  Case huge{"max_rounds 2^32-1", base, "max_rounds = 4294967295: allowed 1..1000"};
  huge.req.set_max_rounds(4294967295u);
  cases.push_back(huge);
  for (const Case& c : cases) {
    auto ctx = context();
    const grpc::Status st = program(c.req, ctx.get());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_TRUE(contains(st.error_message(), c.message)) << c.what << ": " << st.error_message();
    EXPECT_EQ(get(a.id()).state(), "ready") << c.what;
  }
  {  // quick and destructive together
    auto ctx = context();
    v1::ScanFaultsRequest q;
    q.set_array(array);
    q.set_quick(true);
    q.set_destructive(true);
    auto reader = arrays_->ScanFaults(ctx.get(), q);
    v1::ScanFaultsResponse m;
    while (reader->Read(&m)) {
    }
    const grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(contains(st.error_message(), "quick and destructive")) << st.error_message();
  }

  // Deadlines that pass on the way in (the board is free): refused before any side effect.
  for (int i = 0; i < 5; ++i) {
    auto ctx = context(std::chrono::milliseconds(1));
    const grpc::Status st = program(base, ctx.get());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  }
  // Deadlines that pass while the call waits for A's arrays (a stream holds them).
  Stream stream(channel_, a.id());
  const auto s = chirp(kRate / 5);
  ASSERT_TRUE(stream.send(s, 0, 960)) << stream.finish().error_message();
  {
    auto ctx = context(std::chrono::milliseconds(400));
    const grpc::Status st = program(base, ctx.get());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  }
  {
    auto ctx = context(std::chrono::milliseconds(400));
    v1::ScanFaultsRequest sc;
    sc.set_array(array);
    auto reader = arrays_->ScanFaults(ctx.get(), sc);
    v1::ScanFaultsResponse m;
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  ASSERT_TRUE(stream.send(s, 960, s.size(), true));
  ASSERT_TRUE(stream.finish().ok());
  // Whatever the waiters did after their deadlines, none of them pulsed or marked anything.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(get(a.id()).state(), "ready");
  EXPECT_EQ(pulses_applied(), pulses);
  v1::InferResponse r;
  EXPECT_TRUE(infer(a.id(), &r).ok());

  // Unknown enum values, named, with nothing pulsed and no deployment made.
  {
    auto ctx = context();
    v1::DeployKernelRequest dk;
    *dk.mutable_kernel_set() = example_model().kernel_set();
    dk.set_replace(true);
    dk.set_remap(static_cast<v1::RemapMode>(7));
    auto reader = kernels_->DeployKernel(ctx.get(), dk);
    v1::DeployKernelResponse m;
    while (reader->Read(&m)) {
    }
    const grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(contains(st.error_message(), "remap = 7: not a RemapMode")) << st.error_message();
  }
  {
    auto ctx = context();
    v1::DeployModelRequest dm;
    *dm.mutable_model() = example_model();
    dm.mutable_options()->set_replace(true);
    dm.mutable_options()->set_remap(static_cast<v1::RemapMode>(5));
    auto reader = models_->DeployModel(ctx.get(), dm);
    v1::DeployKernelResponse m;
    while (reader->Read(&m)) {
    }
    const grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(contains(st.error_message(), "options.remap = 5")) << st.error_message();
  }
  {
    v1::InferResponse out;
    const grpc::Status st = infer(a.id(), &out, static_cast<v1::InferPath>(9));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(contains(st.error_message(), "path = 9: not a InferPath")) << st.error_message();
  }
  EXPECT_EQ(pulses_applied(), pulses);
  EXPECT_EQ(get(a.id()).state(), "ready");
  auto lctx = context();
  v1::ListDeploymentsResponse list;
  ASSERT_TRUE(kernels_->ListDeployments(lctx.get(), {}, &list).ok());
  EXPECT_EQ(list.deployments_size(), 1);
}

// Issue 16 items 8, 9, 10 and 12: input the API must refuse, with the value as sent.
TEST_F(ApiContract, BadModelsAndAudioAreRefusedNamingTheValueAsSent) {
  start();
  const v1::Deployment a = deploy(example_model());
  ASSERT_EQ(a.state(), "ready") << a.message();
  auto deploy_status = [&](const v1::Model& m) {
    auto ctx = context();
    v1::DeployModelRequest req;
    *req.mutable_model() = m;
    req.mutable_options()->set_replace(true);
    auto reader = models_->DeployModel(ctx.get(), req);
    v1::DeployKernelResponse msg;
    while (reader->Read(&msg)) {
    }
    return reader->Finish();
  };
  v1::Model no_classes = example_model();
  no_classes.clear_classes();
  grpc::Status st = deploy_status(no_classes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(contains(st.error_message(), "classes: 0 names for 2 decoder outputs"))
      << st.error_message();
  v1::Model fast = example_model();
  fast.mutable_preprocessing()->set_sample_rate_hz(1000000000u);
  st = deploy_status(fast);
  EXPECT_TRUE(contains(st.error_message(),
                       "preprocessing.sample_rate_hz = 1000000000: allowed 1000..384000"))
      << st.error_message();
  v1::Model silent = example_model();  // purely imaginary C on a real A: no output
  auto* k = silent.mutable_kernel_set()->mutable_kernels(1);
  k->set_name("silent");
  auto* cont = k->mutable_continuous();
  for (auto& a_n : *cont->mutable_a()) a_n.set_im(0);
  for (auto& c_n : *cont->mutable_c()) c_n.set_re(0);
  k->clear_quantization();
  st = deploy_status(silent);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(contains(st.error_message(), "kernels[1] ('silent'): the impulse response"))
      << st.error_message();
  EXPECT_EQ(get(a.id()).state(), "ready");  // none of that touched the arrays

  // 61 s of samples: refused before they are decoded or copied.
  v1::InferRequest lng;
  lng.set_deployment(a.id());
  lng.set_sample_rate_hz(1000);
  lng.mutable_samples()->Resize(61000, 0.1f);
  v1::InferResponse out;
  auto ctx = context();
  st = models_->Infer(ctx.get(), lng, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(contains(st.error_message(), "samples: 61000 samples at 1000 Hz = 61.0 s"))
      << st.error_message();
  // A WAV at 500 Hz.
  std::string wav = "RIFF";
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) wav.push_back(static_cast<char>(v >> (8 * i)));
  };
  auto u16 = [&](uint16_t v) {
    wav.push_back(static_cast<char>(v));
    wav.push_back(static_cast<char>(v >> 8));
  };
  u32(36 + 200);
  wav += "WAVEfmt ";
  u32(16);
  u16(1);
  u16(1);
  u32(500);
  u32(1000);
  u16(2);
  u16(16);
  wav += "data";
  u32(200);
  wav.append(200, '\0');
  v1::InferRequest w;
  w.set_deployment(a.id());
  w.set_audio(wav);
  auto wctx = context();
  st = models_->Infer(wctx.get(), w, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(contains(st.error_message(), "sample rate 500 Hz: allowed 1000..384000 Hz"))
      << st.error_message();
  // Empty ids.
  auto gctx = context();
  v1::Deployment d;
  st = kernels_->GetDeployment(gctx.get(), {}, &d);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "id: empty: give a deployment id (dep-...)");
}

// Issue 16 item 4: a cancelled ProgramArray was recorded `done`, code 0, with
// report.cancelled = true. Cancelled through CancelOperation and by its own caller, it is
// `cancelled`, code CANCELLED, and the caller still gets the report.
TEST_F(ApiContract, ACancelledProgramArrayIsRecordedCancelled) {
  start("sim:profile=typical,seed=3");
  for (const bool by_operation : {true, false}) {
    grpc::ClientContext ctx;
    auto req = program_request(by_operation ? 0 : 1, 40);
    req.set_tol_us(0.2);  // below the read noise: it would run all its rounds
    req.set_max_rounds(1000);
    auto reader = arrays_->ProgramArray(&ctx, req);
    v1::ProgramArrayResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    const std::string id = operation_id(ctx);
    ASSERT_FALSE(id.empty());
    if (by_operation) {
      auto cctx = context();
      v1::CancelOperationRequest c;
      c.set_id(id);
      v1::Operation op;
      ASSERT_TRUE(ops_->CancelOperation(cctx.get(), c, &op).ok());
    } else {
      ctx.TryCancel();
    }
    v1::ProgramReport report;
    bool got_report = false;
    while (reader->Read(&msg)) {
      if (msg.has_report()) {
        report = msg.report();
        got_report = true;
      }
    }
    const grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
    if (by_operation) {
      ASSERT_TRUE(got_report);
      EXPECT_TRUE(report.cancelled());
      EXPECT_LT(report.rounds(), 1000u);
    }
    v1::Operation op;
    ASSERT_TRUE(eventually([&] {
      auto gctx = context();
      v1::GetOperationRequest g;
      g.set_id(id);
      return ops_->GetOperation(gctx.get(), g, &op).ok() && op.finished_at_ms() != 0;
    }));
    EXPECT_EQ(op.state(), "cancelled") << (by_operation ? "CancelOperation" : "own cancel");
    EXPECT_EQ(op.state_code(), v1::OPERATION_STATE_CANCELLED);
    EXPECT_EQ(op.code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  }
}

// Issue 16 item 6: SIGTERM stopped accepting calls but let a detached operation pulse on for
// 35-46 s. It is cancelled at its next round, recorded so, and xbard exits.
TEST_F(ApiContract, SigtermCancelsADetachedOperationAndExits) {
  start("sim:profile=typical,seed=3");
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-xbar-detach", "1");
  auto req = program_request(0, 40);
  req.set_tol_us(0.2);
  req.set_max_rounds(1000);
  auto reader = arrays_->ProgramArray(&ctx, req);
  v1::ProgramArrayResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  ctx.TryCancel();  // the client goes; the detached operation goes on
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(xbard_->terminate(std::chrono::seconds(30))) << xbard_->exit_description() << log();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string out = log();
  EXPECT_TRUE(contains(out, "1 running operation(s) cancelled")) << out;
  EXPECT_TRUE(contains(out, ", cancelled")) << out;  // the program-verify's own line
  std::printf("xbard exited %.2f s after SIGTERM with a detached program-verify running\n", s);
}

// Issue 16 item 5: a deploy that failed on a disk error stayed `deploying` in ListDeployments
// until xbard restarted. The chip record here lives on a small tmpfs of xbard's own (a mount
// namespace); the test fills it mid-deploy.
TEST_F(ApiContract, ADeployThatFailsOnAFullDiskIsFailedNotDeploying) {
  if (geteuid() != 0 || std::system("unshare -m true >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "needs root and unshare -m (a tmpfs of xbard's own); CI runs as root";
  }
  state_ = dir_.path() / "state";
  fs::create_directories(state_);
  const std::string script =
      "mount -t tmpfs -o size=3m xbar-test " + state_.string() + " && exec \"$0\" \"$@\"";
  start("sim:profile=ideal", {}, {"/usr/bin/unshare", "-m", "/bin/sh", "-c", script});
  const fs::path inside =
      fs::path("/proc") / std::to_string(xbard_->pid()) / "root" / state_.relative_path();
  ASSERT_TRUE(fs::exists(inside / "xbar.db")) << inside;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::DeployModelRequest req;
  *req.mutable_model() = example_model();
  req.mutable_options()->set_replace(true);
  auto reader = models_->DeployModel(&ctx, req);
  v1::DeployKernelResponse msg;
  bool filled = false;
  while (reader->Read(&msg)) {
    if (!filled && msg.has_progress() && msg.progress().stage() == "program") {
      // Fill the disk: the next write-ahead of the pulses fails, and so does the failure's.
      std::ofstream filler(inside / "filler", std::ios::binary);
      const std::string mb(1 << 20, 'x');
      for (int i = 0; i < 8 && filler.write(mb.data(), static_cast<std::streamsize>(mb.size()));
           ++i) {
      }
      filled = true;
    }
  }
  const grpc::Status st = reader->Finish();
  ASSERT_TRUE(filled);
  EXPECT_FALSE(st.ok());
  auto lctx = context();
  v1::ListDeploymentsResponse list;
  ASSERT_TRUE(kernels_->ListDeployments(lctx.get(), {}, &list).ok());
  ASSERT_EQ(list.deployments_size(), 1);
  EXPECT_EQ(list.deployments(0).state(), "failed") << list.deployments(0).message();
  EXPECT_TRUE(contains(list.deployments(0).message(), "not in the chip record"))
      << list.deployments(0).message();
  EXPECT_EQ(get(list.deployments(0).id()).state(), "failed");
  EXPECT_EQ(list.deployments(0).state_code(), v1::DEPLOYMENT_STATE_FAILED);
  v1::InferResponse r;
  EXPECT_EQ(infer(list.deployments(0).id(), &r).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

// Issue 16 item 13: the Bearer scheme is case-insensitive (RFC 6750, RFC 7235).
// Issue 17 item 3: INFER_EMULATE, the loop's integer arithmetic on the host with one tagged VMM
// per step, answers with the board loop's codes: identical kernel outputs and logits, on Infer
// and on a stream; it needs the arrays like the hardware path.
TEST_F(ApiContract, TheEmulatedPathGivesTheBoardsAnswerBitForBit) {
  start("sim:profile=ideal,seed=1");
  const v1::Deployment dep = deploy(example_model());
  ASSERT_EQ(dep.state(), "ready");
  v1::InferResponse hw, em, sw;
  ASSERT_TRUE(infer(dep.id(), &hw, v1::INFER_HARDWARE, true).ok());
  const grpc::Status st = infer(dep.id(), &em, v1::INFER_EMULATE, true);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(infer(dep.id(), &sw, v1::INFER_SOFTWARE, true).ok());
  ASSERT_EQ(hw.kernel_outputs_size(), em.kernel_outputs_size());
  ASSERT_GT(hw.kernel_outputs_size(), 0);
  bool differs_from_software = false;
  for (int k = 0; k < hw.kernel_outputs_size(); ++k) {
    const auto& a = hw.kernel_outputs(k).values();
    const auto& b = em.kernel_outputs(k).values();
    ASSERT_EQ(a.size(), b.size());
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin())) << "kernel " << k;
    const auto& c = sw.kernel_outputs(k).values();
    differs_from_software |= !std::equal(a.begin(), a.end(), c.begin());
  }
  EXPECT_TRUE(differs_from_software);  // the comparison can tell two paths apart
  ASSERT_EQ(hw.logits_size(), em.logits_size());
  for (int i = 0; i < hw.logits_size(); ++i) EXPECT_EQ(hw.logits(i), em.logits(i)) << i;
  EXPECT_EQ(hw.label(), em.label());
  EXPECT_GT(em.board_ms(), 0.0);

  // A stream on each path, same chunks: the same final logits.
  const std::vector<float> s = chirp(kRate / 2);
  std::vector<float> final_logits[2];
  int i = 0;
  for (v1::InferPath path : {v1::INFER_HARDWARE, v1::INFER_EMULATE}) {
    Stream stream(channel_, dep.id(), kRate, path);
    for (size_t at = 0; at < s.size(); at += 4800) {
      const size_t to = std::min(s.size(), at + 4800);
      ASSERT_TRUE(stream.send(s, at, to, to == s.size()));
    }
    const grpc::Status fs = stream.finish();
    ASSERT_TRUE(fs.ok()) << fs.error_message();
    EXPECT_TRUE(stream.last().final());
    final_logits[i++].assign(stream.last().logits().begin(), stream.last().logits().end());
  }
  ASSERT_FALSE(final_logits[0].empty());
  EXPECT_EQ(final_logits[0], final_logits[1]);

  // Like the hardware path, it needs the arrays: not on a deployment another one replaced
  // (stale), which the software path still answers for.
  ASSERT_EQ(deploy(example_model()).state(), "ready");
  v1::InferResponse gone;
  const grpc::Status refused = infer(dep.id(), &gone, v1::INFER_EMULATE);
  EXPECT_TRUE(infer(dep.id(), &gone, v1::INFER_SOFTWARE).ok());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
}

// Issue 17 item 4: a model that carries fidelity clips is run on them, on the board and in
// software, when it is deployed; the deployment reports the agreement, the logit error and the
// predicted clipping, and is degraded below the threshold it was held to. A bad threshold or
// bad clips are refused before anything is pulsed.
TEST_F(ApiContract, ADeployedModelReportsItsFidelityOnTheClipsItCarries) {
  start("sim:profile=ideal,seed=1");
  v1::Model m = example_model();
  auto* cal = m.mutable_calibration();
  const std::vector<float> s = chirp(kRate);
  for (int c = 0; c < 6; ++c) {  // six clips: the chirp's block averages, scaled and shifted
    auto* clip = cal->add_fidelity_clips();
    for (int t = 0; t < 700; ++t) {
      float sum = 0;
      for (int i = 0; i < 64; ++i) sum += s[static_cast<size_t>((t * 64 + i) % s.size())];
      clip->add_values(std::clamp(
          sum / 64 * (1.0f + 0.3f * static_cast<float>(c)) + 0.05f * static_cast<float>(c - 3),
          -1.0f, 1.0f));
    }
  }
  auto deploy_with = [&](std::optional<double> min_agreement, grpc::Status* st,
                         std::vector<std::string>* stages = nullptr) {
    v1::DeployModelRequest req;
    *req.mutable_model() = m;
    req.mutable_options()->set_replace(true);
    if (min_agreement) req.set_min_label_agreement(*min_agreement);
    return deploy_request(req, st, stages);
  };
  grpc::Status st;
  std::vector<std::string> stages;
  const v1::Deployment d = deploy_with(std::nullopt, &st, &stages);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(d.has_fidelity());
  const v1::ModelFidelity& f = d.fidelity();
  EXPECT_EQ(f.clips(), 6u);
  EXPECT_GE(f.label_agreement(), 0.0);
  EXPECT_LE(f.label_agreement(), 1.0);
  EXPECT_GT(f.logit_nrmse(), 0.0);  // the 8-bit loop is not the float recurrence
  EXPECT_EQ(f.state_clip_rate_size(), m.kernel_set().kernels_size());
  EXPECT_DOUBLE_EQ(f.min_label_agreement(), 0.8);  // the default
  EXPECT_GT(f.board_ms(), 0.0);
  EXPECT_NE(std::find(stages.begin(), stages.end(), "fidelity"), stages.end());
  EXPECT_EQ(d.state() == "degraded", f.label_agreement() < 0.8) << d.message();
  // A threshold of 1: degraded exactly when a clip disagrees, with the reason named.
  const v1::Deployment strict = deploy_with(1.0, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(strict.has_fidelity());
  if (strict.fidelity().label_agreement() < 1.0) {
    EXPECT_EQ(strict.state(), "degraded");
    EXPECT_TRUE(contains(strict.message(), "min_label_agreement 100.0 %")) << strict.message();
  } else {
    EXPECT_EQ(strict.state(), "ready") << strict.message();
  }
  const v1::Deployment lax = deploy_with(0.0, &st);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(lax.state(), "ready") << lax.message();
  // A listing without `full` leaves the clips out of the model, like the matrices.
  for (bool full : {false, true}) {
    auto lctx = context();
    v1::ListDeploymentsRequest lr;
    lr.set_full(full);
    v1::ListDeploymentsResponse list;
    ASSERT_TRUE(kernels_->ListDeployments(lctx.get(), lr, &list).ok());
    ASSERT_GT(list.deployments_size(), 0);
    ASSERT_TRUE(list.deployments(0).has_model());
    const v1::Model& listed = list.deployments(0).model();
    EXPECT_EQ(listed.calibration().fidelity_clips_size(), full ? 6 : 0) << full;
    EXPECT_EQ(listed.kernel_set().kernels_size(), m.kernel_set().kernels_size());
  }
  // The ideal twin is deterministic: the same arrays give the same measurement.
  EXPECT_EQ(lax.fidelity().label_agreement(), f.label_agreement());
  EXPECT_EQ(lax.fidelity().logit_nrmse(), f.logit_nrmse());

  // Refused before anything is pulsed, naming the field.
  const uint64_t pulses = pulses_applied();
  for (double bad : {1.5, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    deploy_with(bad, &st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_TRUE(contains(st.error_message(), "min_label_agreement = ")) << st.error_message();
  }
  cal->mutable_fidelity_clips(2)->set_values(5, std::numeric_limits<float>::infinity());
  deploy_with(std::nullopt, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(contains(st.error_message(), "calibration.fidelity_clips[2].values[5] = inf"))
      << st.error_message();
  cal->mutable_fidelity_clips(2)->set_values(5, 0.0f);
  while (cal->fidelity_clips_size() <= 64) *cal->add_fidelity_clips() = cal->fidelity_clips(0);
  deploy_with(std::nullopt, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      contains(st.error_message(), "calibration.fidelity_clips: 65 clips, allowed up to 64"))
      << st.error_message();
  EXPECT_EQ(pulses_applied(), pulses);
  EXPECT_EQ(get(lax.id()).state(), "ready");
}

// Issue 17 item 1: a model's mode ranges (kernel_set.kernels[k].mode_range) change what is
// programmed; they are part of the deployment's kernel set, so the start-up reconciliation of a
// restarted xbard compiles the same targets and finds the deployment still ready (it would
// read as lost against the worst-case gains' targets).
TEST_F(ApiContract, ModeRangesSurviveADaemonRestart) {
  const fs::path sock = dir_.path() / "fwsim.sock";
  auto fwsim = std::make_unique<Process>(
      std::vector<std::string>{XBAR_FWSIM_PATH, "--profile", "ideal", "--seed", "6", "--listen",
                               "unix:" + sock.string()},
      dir_.path() / "fwsim.log");
  ASSERT_TRUE(eventually([&] { return fs::exists(sock); })) << fwsim->output();
  start("unix:" + sock.string());
  v1::Model m = example_model();
  for (v1::Kernel& k : *m.mutable_kernel_set()->mutable_kernels()) {
    const int n = k.has_continuous() ? k.continuous().a_size() : k.discrete().a_bar_size();
    for (int j = 0; j < n; ++j) k.add_mode_range(1.0 + 20.0 * j);
  }
  const v1::Deployment a = deploy(m);
  ASSERT_EQ(a.state(), "ready") << a.message();
  ASSERT_EQ(a.kernel_set().kernels(0).mode_range_size(),
            m.kernel_set().kernels(0).mode_range_size());
  v1::InferResponse before;
  ASSERT_TRUE(infer(a.id(), &before).ok());
  xbard_.reset();  // SIGTERM; the twin keeps the conductances
  start("unix:" + sock.string());
  const v1::Deployment again = get(a.id());
  EXPECT_EQ(again.state(), "ready") << again.message();
  v1::InferResponse after;
  ASSERT_TRUE(infer(a.id(), &after).ok());
  EXPECT_EQ(after.label(), before.label());
}

TEST_F(ApiContract, TheBearerSchemeIsCaseInsensitive) {
  const fs::path token = dir_.path() / "token";
  std::ofstream(token) << "0123456789abcdef-token\n";
  start("sim:profile=ideal", {"--auth-token-file", token.string()});
  for (const std::string scheme : {"Bearer ", "bearer ", "BEARER ", "bEaReR  "}) {
    auto ctx = context();
    ctx->AddMetadata("authorization", scheme + "0123456789abcdef-token");
    v1::DeleteDeploymentRequest d;
    d.set_id("dep-000000000000");
    v1::DeleteDeploymentResponse out;
    const grpc::Status st = kernels_->DeleteDeployment(ctx.get(), d, &out);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << scheme << st.error_message();
  }
  for (const std::string bad : {"Bearer", "Basic 0123456789abcdef-token", "Bearer wrong-token-x",
                                "Bearer0123456789abcdef-token"}) {
    auto ctx = context();
    ctx->AddMetadata("authorization", bad);
    v1::DeleteDeploymentRequest d;
    d.set_id("dep-000000000000");
    v1::DeleteDeploymentResponse out;
    EXPECT_EQ(kernels_->DeleteDeployment(ctx.get(), d, &out).error_code(),
              grpc::StatusCode::UNAUTHENTICATED)
        << bad;
  }
}

}  // namespace
}  // namespace xbar

namespace xbar {
namespace {

// Issue 18: the example model on the log-mel front end: 8 kHz, 16 bands every 80 samples, the
// encoder Linear(16 -> 3). No padding (target_length 0), so a stream's steps are Infer's.
v1::Model log_mel_model() {
  v1::Model m = example_model();
  testing::set_reference_log_mel(m.mutable_preprocessing(), 0);
  v1::Linear* enc = m.mutable_encoder();
  enc->set_inputs(16);
  enc->clear_weight();
  for (int k = 0; k < 3; ++k) {
    for (int f = 0; f < 16; ++f) enc->add_weight(0.25 * std::sin(1.7 * k + 0.9 * f + 0.3));
  }
  return m;
}

// A vowel-like clip at 8 kHz (harmonics of 140 Hz under a formant that moves up), 4037
// samples: 50 whole hops and a partial one.
std::vector<float> vowel_8k() {
  std::vector<float> s(4037);
  for (size_t i = 0; i < s.size(); ++i) {
    const double t = static_cast<double>(i) / 8000;
    double v = 0;
    for (int h = 1; h <= 20; ++h) {
      const double f = 140.0 * h;
      v += std::exp(-std::pow((f - (500 + 2000 * t)) / 300, 2)) * std::sin(2 * M_PI * f * t);
    }
    s[i] = static_cast<float>(0.4 * std::min(1.0, 0.2 + 4 * t) * v);
  }
  return s;
}

// A log-mel model (issue 18) is validated as sent (its front end's fields, the encoder's
// inputs, whole steps in its fidelity clips) before anything is pulsed; once deployed, Infer on
// the board, host-stepped and in software agree on the label (board and emulation bit for bit),
// and a stream in odd chunks ends at Infer's steps and logits, on each path.
TEST_F(ApiContract, ALogMelModelDeploysAndItsPathsAgree) {
  start("sim:profile=ideal,seed=1");
  auto deploy_status = [&](const v1::Model& m) {
    v1::DeployModelRequest req;
    *req.mutable_model() = m;
    req.mutable_options()->set_replace(true);
    grpc::Status st;
    deploy_request(req, &st);
    return st;
  };
  const uint64_t pulses = pulses_applied();
  struct Bad {
    std::function<void(v1::Model&)> change;
    std::string message;
  };
  const std::vector<Bad> bad = {
      {[](v1::Model& m) { m.mutable_preprocessing()->mutable_log_mel()->set_bands(4294967295u); },
       "preprocessing.log_mel.bands = 4294967295: allowed 1..64"},
      {[](v1::Model& m) { m.mutable_preprocessing()->mutable_log_mel()->set_fft_size(100000); },
       "preprocessing.log_mel.fft_size = 100000: allowed a power of two, 16..4096"},
      {[](v1::Model& m) { m.mutable_preprocessing()->mutable_log_mel()->set_fft_size(0); },
       "preprocessing.log_mel.fft_size = 0: allowed a power of two, 16..4096"},
      {[](v1::Model& m) { m.mutable_preprocessing()->mutable_log_mel()->set_high_hz(5000); },
       "preprocessing.log_mel.high_hz = 5000: allowed finite, > low_hz = 125 and <= "
       "sample_rate_hz / 2 = 4000"},
      {[](v1::Model& m) { m.mutable_preprocessing()->mutable_log_mel()->set_range_db(0); },
       "preprocessing.log_mel.range_db = 0: allowed finite, > 0 and <= 200"},
      {[](v1::Model& m) { *m.mutable_encoder() = example_model().encoder(); },
       "encoder.weight: 3 x 1, the model needs 3 x 16 (outputs x inputs: one input per channel "
       "of a step, preprocessing.log_mel.bands = 16)"},
      {[](v1::Model& m) {
         m.mutable_calibration()->add_fidelity_clips()->mutable_values()->Resize(33, 0.5f);
       },
       "calibration.fidelity_clips[0]: 33 values, allowed a multiple of the 16 channels of a "
       "step"},
  };
  for (const Bad& b : bad) {
    v1::Model m = log_mel_model();
    b.change(m);
    const grpc::Status st = deploy_status(m);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.message;
    EXPECT_TRUE(contains(st.error_message(), b.message)) << st.error_message();
  }
  EXPECT_EQ(pulses_applied(), pulses);

  // Deployed with two fidelity clips of 40 steps x 16 bands: measured on the board.
  v1::Model m = log_mel_model();
  for (int c = 0; c < 2; ++c) {
    auto* clip = m.mutable_calibration()->add_fidelity_clips();
    for (int i = 0; i < 40 * 16; ++i) {
      clip->add_values(static_cast<float>(0.5 + 0.5 * std::sin(0.37 * i + c)));
    }
  }
  const v1::Deployment dep = deploy(m);
  ASSERT_EQ(dep.state(), "ready") << dep.message();
  ASSERT_TRUE(dep.has_fidelity());
  EXPECT_EQ(dep.fidelity().clips(), 2u);

  const std::vector<float> s = vowel_8k();
  auto infer_8k = [&](v1::InferPath path, v1::InferResponse* out) {
    v1::InferRequest r;
    r.set_deployment(dep.id());
    r.set_sample_rate_hz(8000);
    r.set_path(path);
    r.set_kernel_outputs(true);
    for (float v : s) r.add_samples(v);
    auto ctx = context();
    return models_->Infer(ctx.get(), r, out);
  };
  v1::InferResponse hw, em, sw;
  ASSERT_TRUE(infer_8k(v1::INFER_HARDWARE, &hw).ok());
  ASSERT_TRUE(infer_8k(v1::INFER_EMULATE, &em).ok());
  ASSERT_TRUE(infer_8k(v1::INFER_SOFTWARE, &sw).ok());
  EXPECT_EQ(hw.steps(), 51u);  // ceil(4037 / 80)
  EXPECT_EQ(sw.steps(), 51u);
  ASSERT_EQ(hw.kernel_outputs_size(), 3);
  EXPECT_EQ(hw.kernel_outputs(0).values_size(), 51);
  for (int i = 0; i < hw.logits_size(); ++i) EXPECT_EQ(hw.logits(i), em.logits(i)) << i;
  EXPECT_EQ(hw.label(), em.label());
  EXPECT_EQ(sw.label(), hw.label()) << "software " << sw.logits(0) << ", " << sw.logits(1)
                                    << "; hardware " << hw.logits(0) << ", " << hw.logits(1);
  std::printf("log-mel model: hardware logits %.4f %.4f, software %.4f %.4f\n", hw.logits(0),
              hw.logits(1), sw.logits(0), sw.logits(1));

  // Streams in chunks of 333 samples (4.2 hops): the last answer has Infer's 51 steps and its
  // logits (float32 on the wire; the head sums step by step, Infer averages at once).
  for (const auto& [path, ref] :
       {std::pair{v1::INFER_SOFTWARE, &sw}, std::pair{v1::INFER_HARDWARE, &hw}}) {
    Stream stream(channel_, dep.id(), 8000, path);
    for (size_t at = 0; at < s.size(); at += 333) {
      const size_t to = std::min(s.size(), at + 333);
      ASSERT_TRUE(stream.send(s, at, to, to == s.size()));
    }
    const grpc::Status fs = stream.finish();
    ASSERT_TRUE(fs.ok()) << fs.error_message();
    EXPECT_TRUE(stream.last().final());
    EXPECT_EQ(stream.last().steps(), 51u) << path;
    ASSERT_EQ(stream.last().logits_size(), ref->logits_size());
    for (int i = 0; i < ref->logits_size(); ++i) {
      EXPECT_NEAR(stream.last().logits(i), ref->logits(i), 1e-5 * (1 + std::abs(ref->logits(i))))
          << path << " logit " << i;
    }
    EXPECT_EQ(stream.last().label(), ref->label()) << path;
  }
}

// Issue 19: every closed set the API sends as a word (a scan's phases, a fault's kind and
// method, a deploy's stages) also comes as its enum, and both name the same value: the enum's
// name is its prefix and the word in capitals. The imssa chip (seed 13) has stuck devices to
// find; a scan that does not restore leaves them in the fault map.
TEST_F(ApiContract, EveryWordComesWithItsEnum) {
  start("sim:profile=imssa,seed=13");
  const auto upper = [](std::string prefix, const std::string& word) {
    for (char c : word) prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return prefix;
  };
  v1::ScanFaultsRequest scan;
  scan.set_array(0);
  scan.set_destructive(true);
  auto ctx = context();
  auto reader = arrays_->ScanFaults(ctx.get(), scan);
  v1::ScanFaultsResponse msg;
  std::vector<std::string> phases;
  while (reader->Read(&msg)) {
    if (!msg.has_phase()) continue;
    phases.push_back(msg.phase().phase());
    EXPECT_EQ(v1::ScanPhase_Name(msg.phase().phase_code()), upper("SCAN_PHASE_", phases.back()));
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(phases, (std::vector<std::string>{"remember", "set", "reset", "confirm", "done"}));

  v1::FaultMap map;
  auto ctx2 = context();
  ASSERT_TRUE(arrays_->GetFaultMap(ctx2.get(), v1::GetFaultMapRequest{}, &map).ok());
  ASSERT_FALSE(map.faults().empty());
  for (const v1::Fault& f : map.faults()) {
    EXPECT_EQ(v1::FaultKind_Name(f.kind_code()), upper("FAULT_KIND_", f.kind()));
    EXPECT_EQ(v1::FaultMethod_Name(f.method_code()), upper("FAULT_METHOD_", f.method()));
    EXPECT_EQ(f.method_code(), v1::FAULT_METHOD_SCAN);
  }

  v1::DeployModelRequest req;
  *req.mutable_model() = example_model();
  auto ctx3 = context();
  auto deploy = models_->DeployModel(ctx3.get(), req);
  v1::DeployKernelResponse out;
  std::set<std::string> stages;
  while (deploy->Read(&out)) {
    if (!out.has_progress()) continue;
    stages.insert(out.progress().stage());
    EXPECT_EQ(v1::DeployStage_Name(out.progress().stage_code()),
              upper("DEPLOY_STAGE_", out.progress().stage()));
  }
  ASSERT_TRUE(deploy->Finish().ok());
  for (const char* stage : {"compile", "queue", "program", "verify"})
    EXPECT_TRUE(stages.contains(stage)) << stage;
}

}  // namespace
}  // namespace xbar
