// What must hold for a kernel set that kernel::validate accepted (kernel_fuzz, model_fuzz,
// grpc_validators_fuzz share it). kernel_fuzz.cc's header lists the properties.
#pragma once

#include "xbar/drivers/board.h"
#include "xbar/kernel/kernel.h"

namespace xbar::fuzz {

/// The twin's INFO as the driver converts it (Board::connect), built once.
const BoardInfo& twin_board_info();

/// Compiles every kernel of `set` and checks the targets, the crossbar against the ideal
/// recurrence and the loop plan against the board's own rules; a violation aborts.
void check_accepted_kernel_set(const kernel::KernelSetSpec& set);

}  // namespace xbar::fuzz
