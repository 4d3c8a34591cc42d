// The a0: transport's factory, for a link that is not a serial port (tests run the bridge on the
// twin's A0 personality in process). Board::open("a0:...") is the way in for everyone else.
#pragma once

#include <memory>
#include <string>

#include "xbar/base/error.h"
#include "xbar/drivers/a0_bridge.h"
#include "xbar/drivers/transport.h"

namespace xbar {

/// A transport that executes protocol v1 frames on `link` through an A0Bridge; powers the
/// board up first (kUnavailable naming the link when nothing answers like an A0).
Result<std::unique_ptr<Transport>> make_a0_transport(std::unique_ptr<A0Link> link, A0Config config);

}  // namespace xbar
