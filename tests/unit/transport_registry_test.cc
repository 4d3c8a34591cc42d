// Board URIs through the transport registry: every transport this test links (xbar_transports)
// registered itself from its own file, and Board::open finds them by scheme only.
#include "xbar/drivers/transport_registry.h"

#include <gtest/gtest.h>

#include "xbar/drivers/board.h"

namespace xbar {
namespace {

Result<std::unique_ptr<Transport>> refuse(const std::string& uri) {
  return make_error(ErrorCode::kNotFound, "test opener: " + uri);
}

XBAR_REGISTER_TRANSPORT(test_tcp_again, "tcp", "tcp:SHADOWED", refuse);
XBAR_REGISTER_TRANSPORT(test_scheme, "xtest", "xtest:[anything]", refuse);

TEST(TransportRegistry, EveryLinkedTransportRegisteredItself) {
  std::vector<std::string> schemes;
  for (const TransportScheme& s : registered_transports()) schemes.push_back(s.scheme);
  for (const char* want : {"sim", "tcp", "unix", "usb", "xtest"}) {
    EXPECT_NE(std::find(schemes.begin(), schemes.end(), want), schemes.end()) << want;
  }
}

TEST(TransportRegistry, ASchemeRegisteredTwiceIsRefusedNamingBoth) {
  auto t = open_transport("tcp:127.0.0.1:1");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::kInternal);
  EXPECT_NE(t.error().message.find("tcp:HOST:PORT"), std::string::npos) << t.error().message;
  EXPECT_NE(t.error().message.find("tcp:SHADOWED"), std::string::npos) << t.error().message;
}

TEST(TransportRegistry, TheSchemeIsMatchedWholeAndTheOpenerGetsTheWholeUri) {
  auto t = open_transport("xtest:a=1");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(t.error().message, "test opener: xtest:a=1");
  auto bare = open_transport("xtest");
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code, ErrorCode::kNotFound);
  // "simulator:" is not "sim:".
  auto other = open_transport("simulator:profile=ideal");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ErrorCode::kInvalidArgument);
}

TEST(TransportRegistry, AnUnknownSchemeListsTheRegisteredForms) {
  auto b = Board::open("serial:/dev/ttyACM0");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, ErrorCode::kInvalidArgument);
  for (const char* form : {"sim:[profile=P", "unix:PATH", "usb:[serial=S]", "xtest:"}) {
    EXPECT_NE(b.error().message.find(form), std::string::npos) << b.error().message;
  }
}

TEST(TransportRegistry, TheTwinOpensThroughItsRegisteredScheme) {
  auto b = Board::open("sim:profile=ideal,seed=3");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)->info().arrays, 3);
  auto bad = Board::open("sim:profile=ideal,link_drop_reply=0.9");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("link_drop_reply = '0.9': allowed 0..0.5 (a probability)"),
            std::string::npos)
      << bad.error().message;
}

}  // namespace
}  // namespace xbar
