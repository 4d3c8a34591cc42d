// Faults and fault-scan progress into their proto messages: the words clients have always read
// (Fault.kind, Fault.method, ScanPhaseUpdate.phase) and their enums (kind_code, method_code,
// phase_code), set together in one place so that they cannot disagree.
#pragma once

#include "chip_record.h"
#include "xbar/drivers/fault_scan.h"
#include "xbar/v1/arrays.pb.h"
#include "xbar/wire/messages.h"

namespace xbar::server {

v1::FaultKind to_proto(wire::FaultKind k);
v1::FaultMethod to_proto(FaultMethod m);
/// A finding's source as the fault map's method (scan, program_verify, quick_check).
v1::FaultMethod to_proto(FaultSource s);
v1::ScanPhase to_proto(ScanPhase p);

/// Sets Fault.kind and kind_code.
void set_kind(v1::Fault& f, wire::FaultKind k);
/// Sets Fault.method and method_code, from the record's method or a finding's source.
void set_method(v1::Fault& f, FaultMethod m);
void set_method(v1::Fault& f, FaultSource s);
/// Sets ScanPhaseUpdate.phase and phase_code.
void set_phase(v1::ScanPhaseUpdate& u, ScanPhase p);

}  // namespace xbar::server
