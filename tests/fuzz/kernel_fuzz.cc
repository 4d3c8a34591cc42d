// Kernel files (configs/kernels/*.json, `xbarctl deploy FILE`): an xbar.v1.KernelSet in the
// protobuf JSON mapping, then what DeployKernel does with it before anything is pulsed:
// kernel_set_from_proto (server/src/kernel_service.cc), kernel::validate with the daemon's
// default program-verify window, kernel::compile, kernel::plan_loop.
//
// The text is parsed as xbarctl's load_kernel_set parses it (client/src/deploy_cmds.cc:
// JsonStringToMessage, unknown fields are errors); the function itself reads a path and lives
// in xbarctl's library, so its two lines are repeated here rather than building the client.
//
// Properties: JSON -> message -> JSON -> message is the identity (NaN == NaN); rejections carry
// a message naming a field; for every kernel set validate() accepts:
//  - compile() gives one state per A entry and 64x64 finite targets inside the window;
//  - the conductances as compiled, run as the crossbar computes them (run_crossbar, identity
//    placement), reproduce the ideal recurrence (run_ideal): the differential 4x4 blocks are
//    exact (docs/kernels.md), so only rounding separates them;
//  - a loop plan that plan_loop accepts passes the board's own check (check_loop_programs, the
//    firmware's OUT_OF_RANGE rules) and survives the LOOP_LOAD encoding unchanged.
#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include "fuzz_util.h"
#include "kernel_checks.h"
#include "model_proto.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/kernel/kernel.h"

using namespace xbar;
namespace pb = google::protobuf;

namespace {

bool same_message(const pb::Message& a, const pb::Message& b) {
  pb::util::DefaultFieldComparator cmp;
  cmp.set_treat_nan_as_equal(true);
  pb::util::MessageDifferencer d;
  d.set_field_comparator(&cmp);
  // Unset == default: protobuf's JSON parser reads "-0" as +0, i.e. a field set to -0.0 comes
  // back unset (3.21; the kernels' arithmetic does not see the difference).
  d.set_message_field_comparison(pb::util::MessageDifferencer::EQUIVALENT);
  return d.Compare(a, b);
}

void check_json_round_trip(const v1::KernelSet& ks) {
  std::string json;
  auto printed = pb::util::MessageToJsonString(ks, &json);
  FUZZ_CHECK(printed.ok(), "a parsed KernelSet does not print: " + printed.ToString());
  v1::KernelSet back;
  auto parsed = pb::util::JsonStringToMessage(json, &back);
  FUZZ_CHECK(parsed.ok(), "the printed KernelSet does not parse: " + parsed.ToString());
  FUZZ_CHECK(same_message(ks, back), "KernelSet JSON round trip changed the message");
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses: expected here, only noise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::KernelSet ks;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // as load_kernel_set
  if (!pb::util::JsonStringToMessage(std::string(xbar::fuzz::as_text(data, size)), &ks, options)
           .ok()) {
    return 0;
  }
  check_json_round_trip(ks);
  auto spec = server::kernel_set_from_proto(ks);
  if (!spec) {
    FUZZ_CHECK(spec.error().code == ErrorCode::kInvalidArgument && !spec.error().message.empty(),
               "kernel_set_from_proto: " + spec.error().message);
    return 0;
  }
  const ProgramVerifyConfig defaults;  // DeployKernel's window unless xbard.yaml changes it
  auto valid = kernel::validate(*spec, defaults.target_min_uS, defaults.target_max_uS);
  auto again = kernel::validate(*spec, defaults.target_min_uS, defaults.target_max_uS);
  FUZZ_CHECK(valid.has_value() == again.has_value(), "validate is not deterministic");
  if (!valid) {
    const std::string& m = valid.error().message;
    FUZZ_CHECK(valid.error().code == ErrorCode::kInvalidArgument &&
                   (m.starts_with("kernels") || m.starts_with("window")),
               "validate: message names no field: " + m);
    return 0;
  }
  xbar::fuzz::check_accepted_kernel_set(*spec);
  return 0;
}
