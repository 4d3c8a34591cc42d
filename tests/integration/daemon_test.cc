// Two daemons in one process: nothing of xbard is process-global any more (issue 19), so each
// Daemon has its own board, record, token and services. Both serve on loopback.
#include "daemon.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "xbar/v1/kernels.grpc.pb.h"

namespace xbar::server {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("xbar-daemon-test-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

DaemonConfig config_for(const fs::path& dir, const std::string& name) {
  DaemonConfig c;
  c.listen = "127.0.0.1:0";  // any free port: the daemon binds it
  c.state_dir = (dir / name).string();
  c.log_level = "warn";
  return c;
}

grpc::Status delete_unknown(const std::string& target, const std::string& token) {
  auto stub =
      v1::KernelService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  v1::DeleteDeploymentRequest q;
  q.set_id("dep-000000000000");
  v1::DeleteDeploymentResponse r;
  return stub->DeleteDeployment(&ctx, q, &r);
}

TEST(Daemon, TwoDaemonsInOneProcessKeepTheirOwnTokens) {
  TempDir dir;
  const std::string token = "0123456789abcdef-token";
  { std::ofstream(dir.path / "token") << token << "\n"; }
  DaemonConfig open_cfg = config_for(dir.path, "open");
  DaemonConfig locked_cfg = config_for(dir.path, "locked");
  locked_cfg.token_file = (dir.path / "token").string();
  auto open = Daemon::create(open_cfg, "sim:profile=ideal,seed=1");
  ASSERT_TRUE(open) << open.error().message;
  auto locked = Daemon::create(locked_cfg, "sim:profile=ideal,seed=2");
  ASSERT_TRUE(locked) << locked.error().message;

  const std::string open_at = "127.0.0.1:" + std::to_string((*open)->port());
  const std::string locked_at = "127.0.0.1:" + std::to_string((*locked)->port());
  ASSERT_NE(open_at, locked_at);
  // The open daemon takes the change (and finds no such deployment); the locked one refuses
  // it without its token and takes it with.
  EXPECT_EQ(delete_unknown(open_at, "").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(delete_unknown(locked_at, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(delete_unknown(locked_at, token).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(delete_unknown(open_at, "").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(Daemon, ABadSettingIsRefusedBeforeTheBoardIsOpened) {
  TempDir dir;
  DaemonConfig c = config_for(dir.path, "bad");
  c.tls_cert = (dir.path / "missing.pem").string();
  auto d = Daemon::create(c, "sim:profile=ideal");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().exit_code, 2);
  EXPECT_NE(d.error().message.find("give both or neither"), std::string::npos) << d.error().message;
  EXPECT_FALSE(fs::exists(dir.path / "bad")) << "the chip record must not be created";

  c.tls_cert.clear();
  auto board = Daemon::create(c, "nosuch:board");
  ASSERT_FALSE(board);
  EXPECT_EQ(board.error().exit_code, 3);
  EXPECT_NE(board.error().message.find("cannot open board 'nosuch:board'"), std::string::npos)
      << board.error().message;
}

}  // namespace
}  // namespace xbar::server
