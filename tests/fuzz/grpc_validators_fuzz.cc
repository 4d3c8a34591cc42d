// The gRPC request validators that can be called on their own: the bytes are a request message
// in the protobuf wire format (what gRPC hands the handler), parsed with ParseFromArray.
//
// Input: u8 selector, then the message.
//   bit 7 set: the rest is ListDeploymentsRequest.page_token -> decode_page_token (the first
//         check of KernelServiceImpl::ListDeployments); properties: refused as kInvalidArgument
//         naming page_token, or accepted and re-encoded to exactly the same text (only
//         canonical tokens are read);
//   else even: xbar.v1.DeployKernelRequest -> kernel_set_from_proto + kernel::validate (the
//         first checks of KernelServiceImpl::deploy, with the daemon's default window);
//   else odd:  xbar.v1.DeployModelRequest -> model_from_proto (ModelServiceImpl::DeployModel),
//         then its kernel set as above (DeployModel goes on into the same deploy path).
//
// The other handlers check their requests inline, against the board's INFO, the chip record or
// the deployment (ReadConductances, ProgramArray, ScanFaults, GetFaultMap, the rest of
// DeployKernel's options, Infer, StreamInfer): there is no function to call without a board and
// a ServerContext, so they are not fuzzed here (tests/fuzz/README.md).
//
// Properties: a validator gives the same verdict and message for the message re-serialized and
// re-parsed (what a retrying client or the chip record hands it); rejections are
// kInvalidArgument naming a field; accepted kernel sets meet kernel_checks.h; an accepted
// model's shapes agree with its kernel count.
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>

#include "deployment_pages.h"
#include "fuzz_util.h"
#include "kernel_checks.h"
#include "model_proto.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/kernel.h"
#include "xbar/v1/kernels.pb.h"
#include "xbar/v1/models.pb.h"

using namespace xbar;

namespace {

// The verdict of the validators on a kernel set: "" if accepted, else the error message.
std::string kernel_verdict(const v1::KernelSet& ks, kernel::KernelSetSpec* out) {
  auto spec = server::kernel_set_from_proto(ks);
  if (!spec) {
    FUZZ_CHECK(spec.error().code == ErrorCode::kInvalidArgument &&
                   spec.error().message.starts_with("kernels["),
               "kernel_set_from_proto: " + spec.error().message);
    return spec.error().message;
  }
  const ProgramVerifyConfig defaults;
  auto v = kernel::validate(*spec, defaults.target_min_uS, defaults.target_max_uS);
  if (!v) {
    FUZZ_CHECK(v.error().code == ErrorCode::kInvalidArgument && !v.error().message.empty(),
               "validate: " + v.error().message);
    return v.error().message;
  }
  FUZZ_CHECK(!spec->kernels.empty() && spec->kernels.size() <= 3, "validate: kernel count");
  for (const kernel::KernelSpec& k : spec->kernels) {
    FUZZ_CHECK(!k.a.empty() && k.a.size() <= 15 && k.c.size() == k.a.size(),
               "validate: state count");
  }
  if (out) *out = *spec;
  return "";
}

std::string model_verdict(const v1::Model& m, model::ModelSpec* out) {
  auto spec = server::model_from_proto(m);
  if (!spec) {
    FUZZ_CHECK(spec.error().code == ErrorCode::kInvalidArgument && !spec.error().message.empty(),
               "model_from_proto: " + spec.error().message);
    return spec.error().message;
  }
  const int h = spec->width();
  // The encoder takes one input per channel of the front end (1, or the log-mel bands); the
  // head's width M is the mixing layer's (halved by the GLU).
  const int f = spec->channels();
  const int m_width = model::head_width(*spec);
  FUZZ_CHECK(h >= 1 && h <= 3 && f >= 1 && f <= audio::LogMel::kMaxBands &&
                 spec->encoder.weight.rows() == h && spec->encoder.weight.cols() == f &&
                 spec->mixing.weight.cols() == h && m_width >= 1 &&
                 spec->mixing.weight.rows() == (spec->glu ? 2 * m_width : m_width) &&
                 spec->decoder.weight.cols() == m_width && spec->decoder.weight.rows() >= 2,
             "model_from_proto: shapes disagree with the kernel count or the front end");
  if (out) *out = *spec;
  return "";
}

template <typename Msg>
Msg reparsed(const Msg& m) {
  Msg again;
  FUZZ_CHECK(again.ParseFromString(m.SerializeAsString()), "a parsed message does not re-parse");
  return again;
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses: expected here, only noise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 0x80) {
    const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
    auto t = server::decode_page_token(text);
    if (!t) {
      FUZZ_CHECK(t.error().code == ErrorCode::kInvalidArgument &&
                     t.error().message.starts_with("page_token: "),
                 "decode_page_token: " + t.error().message);
      return 0;
    }
    FUZZ_CHECK(t->serial.size() <= 64 && t->after.id.size() <= 128,
               "decode_page_token: accepted an over-long serial or id");
    FUZZ_CHECK(server::encode_page_token(*t) == text,
               "decode_page_token accepted a token it would not have written");
    return 0;
  }
  const bool model = data[0] & 1;
  const int len = static_cast<int>(size - 1);
  if (!model) {
    v1::DeployKernelRequest req;
    if (!req.ParseFromArray(data + 1, len)) return 0;
    kernel::KernelSetSpec spec;
    const std::string verdict = kernel_verdict(req.kernel_set(), &spec);
    const std::string again = kernel_verdict(reparsed(req).kernel_set(), nullptr);
    FUZZ_CHECK(
        verdict == again,
        fmt::format("re-serialized request judged differently: '{}' vs '{}'", verdict, again));
    if (verdict.empty()) xbar::fuzz::check_accepted_kernel_set(spec);
    return 0;
  }
  v1::DeployModelRequest req;
  if (!req.ParseFromArray(data + 1, len)) return 0;
  model::ModelSpec spec;
  const std::string verdict = model_verdict(req.model(), &spec);
  const std::string again = model_verdict(reparsed(req).model(), nullptr);
  FUZZ_CHECK(verdict == again,
             fmt::format("re-serialized model judged differently: '{}' vs '{}'", verdict, again));
  if (!verdict.empty()) return 0;
  kernel::KernelSetSpec ks;
  if (kernel_verdict(req.model().kernel_set(), &ks).empty()) {
    xbar::fuzz::check_accepted_kernel_set(ks);
  }
  return 0;
}
