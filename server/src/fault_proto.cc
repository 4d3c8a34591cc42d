#include "fault_proto.h"

#include <string>

namespace xbar::server {

v1::FaultKind to_proto(wire::FaultKind k) {
  switch (k) {
    case wire::FaultKind::kStuckHigh:
      return v1::FAULT_KIND_STUCK_HIGH;
    case wire::FaultKind::kStuckLow:
      return v1::FAULT_KIND_STUCK_LOW;
    case wire::FaultKind::kSlow:
      return v1::FAULT_KIND_SLOW;
    case wire::FaultKind::kNone:
      break;
  }
  return v1::FAULT_KIND_UNSPECIFIED;
}

v1::FaultMethod to_proto(FaultMethod m) {
  switch (m) {
    case FaultMethod::kScan:
      return v1::FAULT_METHOD_SCAN;
    case FaultMethod::kQuickCheck:
      return v1::FAULT_METHOD_QUICK_CHECK;
    case FaultMethod::kProgramVerify:
      return v1::FAULT_METHOD_PROGRAM_VERIFY;
    case FaultMethod::kManual:
      return v1::FAULT_METHOD_MANUAL;
  }
  return v1::FAULT_METHOD_UNSPECIFIED;
}

v1::FaultMethod to_proto(FaultSource s) {
  switch (s) {
    case FaultSource::kScan:
      return v1::FAULT_METHOD_SCAN;
    case FaultSource::kProgramVerify:
      return v1::FAULT_METHOD_PROGRAM_VERIFY;
    case FaultSource::kQuickCheck:
      return v1::FAULT_METHOD_QUICK_CHECK;
  }
  return v1::FAULT_METHOD_UNSPECIFIED;
}

v1::ScanPhase to_proto(ScanPhase p) {
  switch (p) {
    case ScanPhase::kRemember:
      return v1::SCAN_PHASE_REMEMBER;
    case ScanPhase::kSet:
      return v1::SCAN_PHASE_SET;
    case ScanPhase::kReset:
      return v1::SCAN_PHASE_RESET;
    case ScanPhase::kConfirm:
      return v1::SCAN_PHASE_CONFIRM;
    case ScanPhase::kRestore:
      return v1::SCAN_PHASE_RESTORE;
    case ScanPhase::kDone:
      return v1::SCAN_PHASE_DONE;
  }
  return v1::SCAN_PHASE_UNSPECIFIED;
}

void set_kind(v1::Fault& f, wire::FaultKind k) {
  f.set_kind(std::string(wire::fault_kind_name(k)));
  f.set_kind_code(to_proto(k));
}

void set_method(v1::Fault& f, FaultMethod m) {
  f.set_method(std::string(fault_method_name(m)));
  f.set_method_code(to_proto(m));
}

void set_method(v1::Fault& f, FaultSource s) {
  f.set_method(std::string(fault_source_name(s)));
  f.set_method_code(to_proto(s));
}

void set_phase(v1::ScanPhaseUpdate& u, ScanPhase p) {
  u.set_phase(std::string(scan_phase_name(p)));
  u.set_phase_code(to_proto(p));
}

}  // namespace xbar::server
