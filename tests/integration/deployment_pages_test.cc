// ListDeployments in pages and the retention of old deployments (issue 16, item 14):
// - DeploymentPages.*: the page token and the page builder over a real chip record;
// - Listing.*: a real xbard over a Unix socket (embedded ideal twin): pages of real deploys,
//   full pages of ~150 KB deployments under gRPC's 4 MiB default, retention from the config
//   file and the flag, after deploys and at start, and `xbarctl deployments`.
#include "deployment_pages.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "chip_record.h"
#include "infer_stream.h"
#include "process.h"
#include "xbar/v1/board.grpc.pb.h"
#include "xbar/v1/kernels.grpc.pb.h"
#include "xbar/v1/models.grpc.pb.h"

namespace xbar {
namespace {

namespace fs = std::filesystem;
using server::ChipRecord;
using server::DeploymentRow;
using server::PageToken;
using testing::Process;
using testing::read_file;
using testing::TempDir;

constexpr size_t kGrpcDefaultLimit = size_t{4} << 20;  // gRPC's default max message size

std::vector<std::string> ids_of(const google::protobuf::RepeatedPtrField<v1::Deployment>& ds) {
  std::vector<std::string> ids;
  for (const v1::Deployment& d : ds) ids.push_back(d.id());
  return ids;
}

// ---- the token and the page builder, without a daemon ----

TEST(DeploymentPages, TokensRoundTripAndAreOpaqueUrlSafeText) {
  const PageToken t{.after = {1'700'000'000'123, "dep-0123456789ab"},
                    .include_archived = true,
                    .serial = "XS0000000000000D"};
  const std::string text = server::encode_page_token(t);
  EXPECT_EQ(
      text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
      std::string::npos)
      << text;
  EXPECT_EQ(text.find("dep-"), std::string::npos) << "the id shows through: " << text;
  auto back = server::decode_page_token(text);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, t);
  // The longest token (64-byte serial, 128-byte id) fits the documented limit.
  const PageToken big{.after = {INT64_MAX, std::string(128, 'i')}, .serial = std::string(64, 's')};
  const std::string big_text = server::encode_page_token(big);
  EXPECT_LE(big_text.size(), 278u);
  EXPECT_EQ(*server::decode_page_token(big_text), big);
}

TEST(DeploymentPages, TheTokenFormatIsStable) {
  // Tokens handed out by an earlier build (and the fuzz seeds, tests/fuzz/make_seeds.cc) stay
  // readable: a client paging across a daemon upgrade goes on where it was.
  const PageToken t{.after = {1'700'000'000'123, "dep-0123456789ab"},
                    .include_archived = false,
                    .serial = "XS0000000000000D"};
  const std::string text = "AQAAAAGLz-VoexBYUzAwMDAwMDAwMDAwMDBEEGRlcC0wMTIzNDU2Nzg5YWKx_q3-";
  EXPECT_EQ(server::encode_page_token(t), text);
  auto back = server::decode_page_token(text);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, t);
  PageToken archived = t;
  archived.include_archived = true;
  EXPECT_EQ(server::encode_page_token(archived),
            "AQEAAAGLz-VoexBYUzAwMDAwMDAwMDAwMDBEEGRlcC0wMTIzNDU2Nzg5YWLnt9-B");
}

TEST(DeploymentPages, EveryDamagedTokenIsRefusedNamingPageToken) {
  const std::string good = server::encode_page_token(
      {.after = {1000, "dep-000000000001"}, .include_archived = false, .serial = "XS01"});
  std::vector<std::pair<std::string, std::string>> bad = {
      {"not base64url", "dep-000000000001!"},
      {"too short", good.substr(0, 10)},
      {"truncated", good.substr(0, good.size() - 1)},
      {"one character more", good + "A"},
      {"too long", std::string(513, 'A')},
      {"another RPC's kind of token", "CAEQAhoEYWJjZA"},
  };
  // Every single-character change is caught (the check, or the canonical encoding).
  for (size_t i = 0; i < good.size(); ++i) {
    std::string t = good;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    bad.emplace_back("character " + std::to_string(i) + " changed", t);
  }
  for (const auto& [what, text] : bad) {
    SCOPED_TRACE(what);
    auto r = server::decode_page_token(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(r.error().message.rfind("page_token: ", 0), 0u) << r.error().message;
  }
  EXPECT_NE(server::decode_page_token(std::string(513, 'A'))
                .error()
                .message.find("513 characters, allowed up to 512"),
            std::string::npos);
}

// A deployment of `placements` placements with their 64x64 matrices, as DeployKernel records it.
v1::Deployment synthetic_deployment(const std::string& id, int64_t created_at_ms, int placements,
                                    const std::string& state = "stale") {
  v1::Deployment d;
  d.set_id(id);
  d.set_name("synthetic " + id);
  d.set_serial("XS0001");
  d.set_created_at_ms(created_at_ms);
  d.set_state(state);
  for (int p = 0; p < placements; ++p) {
    v1::Placement* pl = d.add_placements();
    pl->set_array(static_cast<uint32_t>(p));
    for (int i = 0; i < 64 * 64; ++i) {
      pl->add_target_us(10.0f + static_cast<float>(i % 97));
      pl->add_readback_us(10.5f + static_cast<float>(i % 89));
      pl->mutable_programming()->add_final_us(10.25f + static_cast<float>(i % 83));
    }
  }
  return d;
}

void put_synthetic(ChipRecord& rec, const v1::Deployment& d, const std::string& serial) {
  DeploymentRow row{.id = d.id(),
                    .serial = serial,
                    .name = d.name(),
                    .state = *server::parse_deployment_state(d.state()),
                    .message = "synthetic",
                    .created_at_ms = d.created_at_ms(),
                    .blob = d.SerializeAsString()};
  auto r = rec.put_deployment(row);
  ASSERT_TRUE(r) << r.error().message;
}

class PageBuilder : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = ChipRecord::open(tmp_.path());
    ASSERT_TRUE(r) << r.error().message;
    rec_ = std::move(*r);
    ASSERT_TRUE(rec_->touch_chip({"XS0001", "1.0", 3, 64, 64}));
    // 25 deployments, two at each creation time (the id breaks the tie): dep-00 newest.
    for (int i = 0; i < 25; ++i) {
      const std::string id = fmt::format("dep-{:02}", i);
      put_synthetic(*rec_, synthetic_deployment(id, 100'000 - (i / 2) * 1000, 1), "XS0001");
      expected_.push_back(id);
    }
  }

  // Every page of a listing; checks each against `max_bytes` and returns the ids in order.
  std::vector<std::string> all_pages(v1::ListDeploymentsRequest req, size_t max_bytes, int* pages) {
    std::vector<std::string> ids;
    *pages = 0;
    for (;;) {
      auto page = server::list_deployments_page(*rec_, "XS0001", req, {}, max_bytes);
      EXPECT_TRUE(page) << page.error().message;
      if (!page) return ids;
      ++*pages;
      EXPECT_GE(page->deployments_size(), 1);
      if (page->deployments_size() > 1) {
        EXPECT_LE(page->ByteSizeLong() - page->next_page_token().size() - 3, max_bytes);
      }
      for (const std::string& id : ids_of(page->deployments())) ids.push_back(id);
      if (page->next_page_token().empty()) return ids;
      req.set_page_token(page->next_page_token());
      if (*pages > 100) {
        ADD_FAILURE() << "no end";
        return ids;
      }
    }
  }

  TempDir tmp_;
  std::unique_ptr<ChipRecord> rec_;
  std::vector<std::string> expected_;
};

TEST_F(PageBuilder, PagesBySizeCoverEveryDeploymentOnceNewestFirst) {
  v1::ListDeploymentsRequest req;
  int pages = 0;
  req.set_page_size(4);
  EXPECT_EQ(all_pages(req, server::kMaxPageBytes, &pages), expected_);
  EXPECT_EQ(pages, 7);   // 6 x 4 + 1
  req.set_page_size(0);  // the default, 50: one page
  EXPECT_EQ(all_pages(req, server::kMaxPageBytes, &pages), expected_);
  EXPECT_EQ(pages, 1);
  req.set_page_size(25);  // exactly all: no token for an empty page after it
  EXPECT_EQ(all_pages(req, server::kMaxPageBytes, &pages), expected_);
  EXPECT_EQ(pages, 1);
}

TEST_F(PageBuilder, FullPagesEndByBytesAndANonFullPageHasNoMatrices) {
  // One full synthetic deployment is ~50 KB; a 120 KB budget holds 2 of them.
  const size_t one = synthetic_deployment("dep-00", 1, 1).ByteSizeLong();
  ASSERT_GT(one, 40'000u);
  v1::ListDeploymentsRequest req;
  req.set_full(true);
  req.set_page_size(1000);
  int pages = 0;
  EXPECT_EQ(all_pages(req, 120'000, &pages), expected_);
  EXPECT_EQ(pages, 13);  // 12 x 2 + 1
  auto first = server::list_deployments_page(*rec_, "XS0001", req, {}, 120'000);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->deployments_size(), 2);
  EXPECT_EQ(first->deployments(0).placements(0).target_us_size(), 64 * 64);
  // A budget below one deployment: one a page, never none.
  EXPECT_EQ(all_pages(req, 1000, &pages), expected_);
  EXPECT_EQ(pages, 25);
  // Without full: the matrices are dropped, and the same budget holds the whole list.
  req.set_full(false);
  auto slim = server::list_deployments_page(*rec_, "XS0001", req, {}, 120'000);
  ASSERT_TRUE(slim);
  EXPECT_EQ(slim->deployments_size(), 25);
  EXPECT_TRUE(slim->next_page_token().empty());
  EXPECT_EQ(slim->deployments(0).placements(0).target_us_size(), 0);
  EXPECT_EQ(slim->deployments(0).placements(0).programming().final_us_size(), 0);
}

TEST_F(PageBuilder, BadPageSizeAndTokensAreRefusedBeforeReading) {
  v1::ListDeploymentsRequest req;
  req.set_page_size(1001);
  auto r = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message.rfind("page_size = 1001: allowed 0..1000", 0), 0u)
      << r.error().message;
  req.set_page_size(1000);
  EXPECT_TRUE(server::list_deployments_page(*rec_, "XS0001", req));

  // A token of a listing with include_archived, used without it (and the reverse).
  req.set_page_size(3);
  req.set_include_archived(true);
  auto p1 = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_TRUE(p1);
  ASSERT_FALSE(p1->next_page_token().empty());
  req.set_page_token(p1->next_page_token());
  req.set_include_archived(false);
  r = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("page_token: issued for include_archived = true, this "
                                   "request has include_archived = false"),
            std::string::npos)
      << r.error().message;
  // Another chip's token.
  req.set_include_archived(true);
  r = server::list_deployments_page(*rec_, "XS0002", req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("page_token: issued for the deployments of chip XS0001"),
            std::string::npos)
      << r.error().message;
  // The same token with the same fields goes on where page 1 ended (the full flag and the
  // page size may change).
  req.set_full(true);
  req.set_page_size(2);
  auto p2 = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_TRUE(p2) << p2.error().message;
  EXPECT_EQ(ids_of(p2->deployments()), (std::vector<std::string>{"dep-03", "dep-04"}));
}

TEST_F(PageBuilder, ArchivedDeploymentsOnlyWhenAskedAndWithoutMatrices) {
  // The 25 are stale and own no array: keep 20, archive the 5 oldest.
  auto archived = server::apply_retention(*rec_, "XS0001", 20);
  ASSERT_TRUE(archived) << archived.error().message;
  EXPECT_EQ(*archived, std::vector<std::string>(expected_.begin() + 20, expected_.end()));
  EXPECT_TRUE(server::apply_retention(*rec_, "XS0001", std::nullopt)->empty());  // off

  v1::ListDeploymentsRequest req;
  req.set_full(true);
  auto visible = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_TRUE(visible);
  EXPECT_EQ(ids_of(visible->deployments()),
            std::vector<std::string>(expected_.begin(), expected_.begin() + 20));
  req.set_include_archived(true);
  auto all = server::list_deployments_page(*rec_, "XS0001", req);
  ASSERT_TRUE(all);
  ASSERT_EQ(ids_of(all->deployments()), expected_);
  for (const v1::Deployment& d : all->deployments()) {
    SCOPED_TRACE(d.id());
    const bool old = std::find(archived->begin(), archived->end(), d.id()) != archived->end();
    EXPECT_EQ(d.archived_at_ms() > 0, old);
    ASSERT_EQ(d.placements_size(), 1);
    EXPECT_EQ(d.placements(0).target_us_size(), old ? 0 : 64 * 64);
    EXPECT_EQ(d.placements(0).readback_us_size(), old ? 0 : 64 * 64);
    EXPECT_EQ(d.placements(0).programming().final_us_size(), old ? 0 : 64 * 64);
    EXPECT_EQ(d.name(), "synthetic " + d.id());  // the history stays
  }
  // The archived blob itself says it is archived (GetDeployment parses the blob).
  auto row = rec_->deployment(expected_.back());
  ASSERT_TRUE(row);
  v1::Deployment blob;
  ASSERT_TRUE(blob.ParseFromString(row->blob));
  EXPECT_EQ(blob.archived_at_ms(), row->archived_at_ms);
  EXPECT_LT(row->blob.size(), 1000u);
}

// ---- a real xbard ----

class Listing : public ::testing::Test {
 protected:
  fs::path state() const { return dir_.path() / "state"; }

  void start(std::vector<std::string> extra = {}) {
    addr_ = "unix:" + (dir_.path() / "xbard.sock").string();
    std::vector<std::string> argv = {XBARD_PATH, "--board",     "sim:profile=ideal", "--listen",
                                     addr_,      "--state-dir", state().string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    xbard_ = std::make_unique<Process>(argv, dir_.path() / "xbard.log");
    ASSERT_TRUE(testing::eventually(
        [&] { return log().find("serving") != std::string::npos || !xbard_->running(); },
        std::chrono::seconds(60)))
        << log();
    ASSERT_TRUE(xbard_->running()) << log();
    channel_ = grpc::CreateChannel(addr_, grpc::InsecureChannelCredentials());
    kernels_ = v1::KernelService::NewStub(channel_);
  }
  void stop() {
    ASSERT_TRUE(xbard_->terminate(std::chrono::seconds(20))) << xbard_->exit_description();
  }
  std::string log() const { return read_file(dir_.path() / "xbard.log"); }

  std::unique_ptr<grpc::ClientContext> context() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    return c;
  }

  static v1::KernelSet example_kernels(int n) {
    v1::KernelSet ks;
    const std::string json =
        read_file(std::string(XBAR_SOURCE_DIR) + "/configs/kernels/example.json");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &ks).ok());
    while (ks.kernels_size() > n) ks.mutable_kernels()->RemoveLast();
    return ks;
  }

  // Deploys the first `kernels` example kernels onto `arrays`, taking them (replace); returns
  // the deployment as the deploy ended it.
  v1::Deployment deploy(int kernels, std::vector<uint32_t> arrays, const std::string& name) {
    v1::DeployKernelRequest req;
    *req.mutable_kernel_set() = example_kernels(kernels);
    req.set_name(name);
    req.set_replace(true);
    for (uint32_t a : arrays) req.add_arrays(a);
    auto ctx = context();
    auto reader = kernels_->DeployKernel(ctx.get(), req);
    v1::DeployKernelResponse msg;
    v1::Deployment dep;
    while (reader->Read(&msg)) {
      if (msg.has_deployment()) dep = msg.deployment();
    }
    const grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(dep.id().empty());
    return dep;
  }

  grpc::Status list(const v1::ListDeploymentsRequest& req, v1::ListDeploymentsResponse* out) {
    auto ctx = context();  // default channel limits: 4 MiB received
    return kernels_->ListDeployments(ctx.get(), req, out);
  }

  // Every page; each must arrive (under the client's 4 MiB limit) and end with a token but
  // the last. Returns the deployments in order.
  std::vector<v1::Deployment> every_page(v1::ListDeploymentsRequest req, int* pages,
                                         size_t* largest = nullptr) {
    std::vector<v1::Deployment> all;
    *pages = 0;
    for (;;) {
      v1::ListDeploymentsResponse page;
      const grpc::Status st = list(req, &page);
      EXPECT_TRUE(st.ok()) << "page " << *pages << ": " << st.error_message();
      if (!st.ok()) return all;
      ++*pages;
      if (largest) *largest = std::max(*largest, page.ByteSizeLong());
      all.insert(all.end(), page.deployments().begin(), page.deployments().end());
      if (page.next_page_token().empty()) return all;
      EXPECT_GT(page.deployments_size(), 0);
      req.set_page_token(page.next_page_token());
      if (*pages > 1000) {
        ADD_FAILURE() << "no end";
        return all;
      }
    }
  }

  static std::vector<std::string> ids(const std::vector<v1::Deployment>& ds) {
    std::vector<std::string> out;
    for (const v1::Deployment& d : ds) out.push_back(d.id());
    return out;
  }

  TempDir dir_;
  std::string addr_;
  std::unique_ptr<Process> xbard_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KernelService::Stub> kernels_;
};

TEST_F(Listing, PagesOfRealDeploysCoverEachOnceNewestFirstAndTokensWork) {
  start();
  std::vector<std::string> newest_first;  // one kernel on array 0, each taking it
  for (int i = 0; i < 5; ++i) {
    newest_first.insert(newest_first.begin(), deploy(1, {0}, "d" + std::to_string(i)).id());
  }
  int pages = 0;
  v1::ListDeploymentsRequest req;
  req.set_page_size(2);
  const auto all = every_page(req, &pages);
  EXPECT_EQ(ids(all), newest_first);
  EXPECT_EQ(pages, 3);
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_GE(all[i - 1].created_at_ms(), all[i].created_at_ms());
  }
  EXPECT_EQ(all.front().state(), "ready");
  EXPECT_EQ(all.back().state(), "stale");
  // The default page holds all five, and so does a page of exactly five: no token then.
  for (uint32_t size : {0u, 5u}) {
    req.set_page_size(size);
    v1::ListDeploymentsResponse page;
    ASSERT_TRUE(list(req, &page).ok());
    EXPECT_EQ(ids_of(page.deployments()), newest_first) << size;
    EXPECT_TRUE(page.next_page_token().empty()) << size;
  }

  // Page 1 of 2 a page; a deploy meanwhile is newer than the token: the rest of the listing
  // neither repeats nor skips anything.
  req.set_page_size(2);
  v1::ListDeploymentsResponse p1;
  ASSERT_TRUE(list(req, &p1).ok());
  EXPECT_EQ(ids_of(p1.deployments()),
            std::vector<std::string>(newest_first.begin(), newest_first.begin() + 2));
  const std::string newer = deploy(1, {0}, "meanwhile").id();
  req.set_page_token(p1.next_page_token());
  const auto rest = every_page(req, &pages);
  EXPECT_EQ(ids(rest), std::vector<std::string>(newest_first.begin() + 2, newest_first.end()));

  // Bad input: INVALID_ARGUMENT naming the field.
  auto refused = [&](const v1::ListDeploymentsRequest& bad, const std::string& field) {
    v1::ListDeploymentsResponse out;
    const grpc::Status st = list(bad, &out);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_EQ(st.error_message().rfind(field, 0), 0u) << st.error_message();
    EXPECT_EQ(out.deployments_size(), 0);
  };
  v1::ListDeploymentsRequest bad = req;
  std::string token = p1.next_page_token();
  token[token.size() / 2] = token[token.size() / 2] == 'x' ? 'y' : 'x';
  bad.set_page_token(token);
  refused(bad, "page_token: ");
  bad.set_page_token("not a token");
  refused(bad, "page_token: ");
  bad.set_page_token(p1.next_page_token());
  bad.set_include_archived(true);
  refused(bad, "page_token: issued for include_archived = false");
  bad = v1::ListDeploymentsRequest();
  bad.set_page_size(5000);
  refused(bad, "page_size = 5000: allowed 0..1000");

  // A token outlives the daemon: after a restart it goes on where it stopped.
  stop();
  start();
  v1::ListDeploymentsResponse after_restart;
  ASSERT_TRUE(list(req, &after_restart).ok());
  EXPECT_EQ(ids_of(after_restart.deployments()),
            std::vector<std::string>(newest_first.begin() + 2, newest_first.begin() + 4));
  req.set_page_token("");
  ASSERT_TRUE(list(req, &after_restart).ok());
  EXPECT_EQ(after_restart.deployments(0).id(), newer);
}

TEST_F(Listing, FullPagesOfLargeDeploymentsStayUnderTheMessageLimit) {
  // One real deploy of three kernels (three 64x64 placements), then 60 copies of it in the
  // record, as 60 more deploys would leave them (stale, owning no array): 9 MB of deployments.
  start({"--keep-inactive", "all"});
  const v1::Deployment real = deploy(3, {}, "real");
  v1::Deployment full;
  {
    v1::GetDeploymentRequest get;
    get.set_id(real.id());
    auto ctx = context();
    ASSERT_TRUE(kernels_->GetDeployment(ctx.get(), get, &full).ok());
  }
  ASSERT_EQ(full.placements_size(), 3);
  const size_t one = full.ByteSizeLong();
  EXPECT_GT(one, 120'000u);  // ~150 KB: 3 placements x 3 matrices of 4096 floats
  stop();
  constexpr int kCopies = 60;
  {
    auto rec = ChipRecord::open(state());
    ASSERT_TRUE(rec) << rec.error().message;
    for (int i = 0; i < kCopies; ++i) {
      v1::Deployment copy = full;
      copy.set_id(fmt::format("dep-copy{:08}", i));
      copy.set_state("stale");
      copy.set_created_at_ms(full.created_at_ms() - 1000 * (i + 1));
      put_synthetic(**rec, copy, full.serial());
    }
  }
  ASSERT_GT(one * (kCopies + 1), 2 * kGrpcDefaultLimit);  // one message could never hold them
  start({"--keep-inactive", "all"});

  int pages = 0;
  size_t largest = 0;
  v1::ListDeploymentsRequest req;
  req.set_full(true);
  req.set_page_size(1000);  // the byte limit ends the pages, not the count
  const auto all = every_page(req, &pages, &largest);
  ASSERT_EQ(all.size(), size_t{kCopies + 1});
  std::set<std::string> unique;
  for (const v1::Deployment& d : all) {
    unique.insert(d.id());
    ASSERT_EQ(d.placements_size(), 3) << d.id();
    EXPECT_EQ(d.placements(2).readback_us_size(), 64 * 64) << d.id();
  }
  EXPECT_EQ(unique.size(), all.size());
  EXPECT_EQ(all.front().id(), real.id());
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_GT(all[i - 1].created_at_ms(), all[i].created_at_ms());
  }
  EXPECT_LE(largest, server::kMaxPageBytes + 1024);
  EXPECT_LT(largest, kGrpcDefaultLimit / 3);
  EXPECT_GE(pages, static_cast<int>((kCopies + 1) * one / server::kMaxPageBytes));
  RecordProperty("full_pages", pages);
  RecordProperty("largest_page_bytes", static_cast<int>(largest));

  // Without full the same 61 fit the default page size's pages (50 and 11).
  req.set_full(false);
  req.set_page_size(0);
  const auto slim = every_page(req, &pages, &largest);
  EXPECT_EQ(ids(slim), ids(all));
  EXPECT_EQ(pages, 2);
  ASSERT_FALSE(slim.empty());
  EXPECT_LT(slim.front().ByteSizeLong(), one / 20);  // what an archived deployment keeps
  RecordProperty("deployment_bytes_full", static_cast<int>(one));
  RecordProperty("deployment_bytes_without_matrices",
                 static_cast<int>(slim.front().ByteSizeLong()));

  // xbarctl follows the pages: all 61 once, newest first; --limit stops early.
  const fs::path out = dir_.path() / "ctl.out";
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {XBARCTL_PATH, "--server", addr_});
    return testing::run(args, out);
  };
  auto [rc, json] = ctl({"--json", "deployments"});
  ASSERT_EQ(rc, 0) << json;
  v1::ListDeploymentsResponse merged;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &merged).ok()) << json;
  EXPECT_EQ(ids_of(merged.deployments()), ids(all));
  EXPECT_TRUE(merged.next_page_token().empty());
  auto [rc2, limited] = ctl({"--json", "deployments", "--limit", "55"});
  ASSERT_EQ(rc2, 0) << limited;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(limited, &merged).ok()) << limited;
  const std::vector<std::string> all_ids = ids(all);
  EXPECT_EQ(ids_of(merged.deployments()),
            std::vector<std::string>(all_ids.begin(), all_ids.begin() + 55));
}

TEST_F(Listing, RetentionArchivesTheOldestInactiveAfterDeploysAndAtStart) {
  // keep_inactive 2 from the config file.
  const fs::path config = dir_.path() / "xbard.yaml";
  std::ofstream(config) << "retention:\n  keep_inactive: 2\n";
  start({"--config", config.string()});
  // d0 on array 1 stays ready throughout, the oldest of all; d1..d5 take array 0 in turn.
  const std::string d0 = deploy(1, {1}, "kept ready").id();
  std::vector<std::string> d;
  for (int i = 1; i <= 5; ++i) d.push_back(deploy(1, {0}, "d" + std::to_string(i)).id());
  // Now stale: d4, d3 (kept, the newest 2), d2, d1 (archived).
  v1::ListDeploymentsRequest req;
  int pages = 0;
  EXPECT_EQ(ids(every_page(req, &pages)), (std::vector<std::string>{d[4], d[3], d[2], d0}));
  req.set_include_archived(true);
  const auto everything = every_page(req, &pages);
  ASSERT_EQ(ids(everything), (std::vector<std::string>{d[4], d[3], d[2], d[1], d[0], d0}));
  for (const v1::Deployment& dep : everything) {
    const bool archived = dep.id() == d[0] || dep.id() == d[1];
    EXPECT_EQ(dep.archived_at_ms() > 0, archived) << dep.id();
    EXPECT_EQ(dep.state(), dep.id() == d[4] || dep.id() == d0 ? "ready" : "stale") << dep.id();
  }
  // GetDeployment answers for an archived one: its history without the matrices.
  v1::GetDeploymentRequest get;
  get.set_id(d[0]);
  v1::Deployment old;
  {
    auto ctx = context();
    const grpc::Status st = kernels_->GetDeployment(ctx.get(), get, &old);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(old.name(), "d1");
  EXPECT_EQ(old.state(), "stale");
  EXPECT_NE(old.message().find("array 0 was taken by deployment " + d[1]), std::string::npos)
      << old.message();
  EXPECT_GT(old.archived_at_ms(), 0);
  ASSERT_EQ(old.placements_size(), 1);
  EXPECT_EQ(old.placements(0).array(), 0u);
  EXPECT_GT(old.placements(0).nrmse(), 0);
  EXPECT_EQ(old.placements(0).target_us_size(), 0);
  EXPECT_GT(old.placements(0).programming().rounds(), 0u);
  EXPECT_NE(log().find("deployment " + d[0] + " archived"), std::string::npos);

  // xbarctl: the archived ones only with --archived, marked.
  const fs::path out = dir_.path() / "ctl.out";
  auto [rc, table] = testing::run({XBARCTL_PATH, "--server", addr_, "deployments"}, out);
  ASSERT_EQ(rc, 0) << table;
  EXPECT_EQ(table.find(d[0]), std::string::npos) << table;
  EXPECT_NE(table.find(d[2]), std::string::npos) << table;
  auto [rc2, with] =
      testing::run({XBARCTL_PATH, "--server", addr_, "deployments", "--archived"}, out);
  ASSERT_EQ(rc2, 0) << with;
  EXPECT_NE(with.find(d[0]), std::string::npos) << with;
  EXPECT_NE(with.find("stale (archived)"), std::string::npos) << with;

  // At start, with the flag over the config: keep none. d4 and d3 go; d5 and d0 own arrays
  // (ready, or lost if reconciliation finds the restarted embedded twin's arrays blank) and
  // stay.
  stop();
  start({"--config", config.string(), "--keep-inactive", "0"});
  req.set_include_archived(false);
  EXPECT_EQ(ids(every_page(req, &pages)), (std::vector<std::string>{d[4], d0}));
  EXPECT_NE(log().find("retention: 2 deployment(s) archived"), std::string::npos) << log();
  req.set_include_archived(true);
  EXPECT_EQ(every_page(req, &pages).size(), 6u);  // nothing erased
}

TEST_F(Listing, InferenceRefusesAnArchivedModelDeploymentOnBothPaths) {
  // keep none: the first model deployment is archived once the second takes its arrays.
  start({"--keep-inactive", "0"});
  auto models = v1::ModelService::NewStub(channel_);
  auto deploy_model = [&] {
    v1::DeployModelRequest req;
    const std::string json = read_file(std::string(XBAR_SOURCE_DIR) + "/models/example-model.json");
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, req.mutable_model()).ok());
    req.mutable_options()->set_replace(true);
    auto ctx = context();
    grpc::Status st;
    const std::string id = testing::deploy_model(*models, ctx.get(), req, &st).id();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return id;
  };
  auto infer = [&](const std::string& id, v1::InferPath path) {
    v1::InferRequest req;
    req.set_deployment(id);
    req.set_sample_rate_hz(48000);
    for (int i = 0; i < 4800; ++i) req.add_samples(0.3f * static_cast<float>(i % 50) / 50);
    req.set_path(path);
    v1::InferResponse out;
    auto ctx = context();
    return models->Infer(ctx.get(), req, &out);
  };
  const std::string first = deploy_model();
  ASSERT_TRUE(infer(first, v1::INFER_SOFTWARE).ok());
  const std::string second = deploy_model();
  ASSERT_TRUE(infer(second, v1::INFER_SOFTWARE).ok());
  v1::Deployment old;
  {
    v1::GetDeploymentRequest get;
    get.set_id(first);
    auto ctx = context();
    ASSERT_TRUE(kernels_->GetDeployment(ctx.get(), get, &old).ok());
  }
  ASSERT_GT(old.archived_at_ms(), 0);
  EXPECT_TRUE(old.has_model());  // the model stays with its history
  const grpc::Status sw = infer(first, v1::INFER_SOFTWARE);
  EXPECT_EQ(sw.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << sw.error_message();
  EXPECT_NE(sw.error_message().find("is stale and archived"), std::string::npos)
      << sw.error_message();
  const grpc::Status hw = infer(first, v1::INFER_HARDWARE);
  EXPECT_EQ(hw.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << hw.error_message();
}

TEST(ListingFlags, ABadKeepInactiveIsRefusedNamingTheFlagOrKey) {
  TempDir dir;
  auto [rc, out] = testing::run(
      {XBARD_PATH, "--keep-inactive", "-1", "--state-dir", (dir.path() / "s").string()},
      dir.path() / "log");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--keep-inactive: '-1': allowed 0..1000000"), std::string::npos) << out;
  const fs::path config = dir.path() / "xbard.yaml";
  std::ofstream(config) << "retention:\n  keep_inactive: many\n";
  auto [rc2, out2] = testing::run({XBARD_PATH, "--config", config.string()}, dir.path() / "log");
  EXPECT_EQ(rc2, 2) << out2;
  EXPECT_NE(out2.find("retention.keep_inactive: 'many': allowed 0..1000000"), std::string::npos)
      << out2;
}

}  // namespace
}  // namespace xbar
