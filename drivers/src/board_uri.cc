// Board::open: the URI's scheme picks a registered transport (transport_registry.h; libiio's
// idea: one API, backends by prefix).
#include "xbar/drivers/board.h"
#include "xbar/drivers/transport_registry.h"

namespace xbar {

Result<std::unique_ptr<Board>> Board::open(const std::string& uri) {
  auto transport = open_transport(uri);
  if (!transport) return std::unexpected(transport.error());
  return connect(std::move(*transport));
}

}  // namespace xbar
