// Configuration parsing: profiles and the daemon config reject bad input with the key's name.
#include "config.h"

#include <gtest/gtest.h>

#include "xbar/twin/profile.h"

namespace xbar {
namespace {

TEST(Profiles, AllBuiltInProfilesLoadAndValidate) {
  for (const std::string name : {"ideal", "imssa", "typical", "harsh"}) {
    auto p = twin::load_profile(name);
    ASSERT_TRUE(p.has_value()) << p.error();
    EXPECT_EQ(p->name, name);
    EXPECT_EQ(p->arrays, 3);
    EXPECT_EQ(p->rows, 64);
  }
  EXPECT_FALSE(twin::load_profile("ideal")->read_noise);
  EXPECT_EQ(twin::load_profile("imssa")->stuck_high.count_hi, 3);
  EXPECT_DOUBLE_EQ(twin::load_profile("harsh")->stuck_low.fraction, 0.02);
}

TEST(Profiles, ErrorsNameTheKey) {
  auto wrong_type = twin::parse_profile_yaml("device:\n  set:\n    rate_per_V: fast\n", "t.yaml");
  ASSERT_FALSE(wrong_type.has_value());
  EXPECT_EQ(wrong_type.error(),
            "t.yaml: device.set.rate_per_V: expected a finite number, got 'fast'");
  auto unknown = twin::parse_profile_yaml("adc: {bitz: 10}\n", "t.yaml");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_NE(unknown.error().find("adc.bitz: unknown key (allowed here: bits, v_hi_V, v_lo_V)"),
            std::string::npos)
      << unknown.error();
  auto range = twin::parse_profile_yaml("adc: {bits: 40}\n", "t.yaml");
  EXPECT_NE(range.error().find("adc.bits = 40: allowed 4..16"), std::string::npos) << range.error();
  auto both = twin::parse_profile_yaml(
      "faults: {stuck_high: {fraction: 0.1, count_per_array: [1, 2]}}\n", "t");
  EXPECT_NE(both.error().find("either fraction or count_per_array"), std::string::npos);
  auto syntax = twin::parse_profile_yaml("adc: [1, 2\n", "t.yaml");
  EXPECT_NE(syntax.error().find("YAML syntax error"), std::string::npos);
  auto missing = twin::load_profile("/nonexistent/x.yaml");
  EXPECT_NE(missing.error().find("cannot open"), std::string::npos);
}

// Found by tests/fuzz/config_fuzz (tests/fuzz/corpus/config/regress-profile-null-key.yaml): a
// key that is not a name (null, a list, a mapping) made as<std::string>() throw out of
// parse_profile_yaml, which ended xbard or xbar-fwsim with std::terminate.
TEST(Profiles, KeysThatAreNotNamesAreErrorsNotExceptions) {
  for (const char* text :
       {"\n?\n:", "[adc]: 1\n", "adc: {? {bits: 1}: 2}\n", "adc:\n  ?\n  : 3\n"}) {
    std::expected<twin::ChipProfile, std::string> p;
    EXPECT_NO_THROW(p = twin::parse_profile_yaml(text, "t.yaml")) << text;
    ASSERT_FALSE(p.has_value()) << text;
    EXPECT_NE(p.error().find(": expected a key name, got "), std::string::npos) << p.error();
  }
}

// Found by tests/fuzz/config_fuzz's INFO-fits property (corpus/config/regress-profile-*.yaml):
// validate_profile accepted values the twin's INFO reply cannot carry. The Firmware then cast a
// gain of 1e10 ohm to u32 (undefined), wrapped 70 V to 4464 mV and -0.2 V to 65336 mV, and
// count_per_array [0, 1e10] was cast to int before any check (undefined).
TEST(Profiles, ValuesTheInfoReplyCannotCarryAreRefused) {
  const std::pair<const char*, const char*> cases[] = {
      {"tia: {gains_ohm: [1e10]}\n", "tia.gains_ohm[0] = 10000000000: allowed 1..4294967295 ohm"},
      {"tia: {gains_ohm: [0.5]}\n", "tia.gains_ohm[0] = 0.5: allowed 1..4294967295 ohm"},
      {"adc: {v_hi_V: 70}\n", "adc.v_hi_V = 70: allowed 0..65.535 V"},
      {"read: {v_read_V: -0.2}\n", "read.v_read_V = -0.2: allowed 0..65.535 V"},
      {"dac: {v_min_V: -40}\n", "dac.v_min_V = -40: allowed -32.768..32.767 V"},
      {"pulse: {width_step_ns: 70000}\n", "pulse.width_step_ns = 70000: allowed 1..65535"},
      {"faults:\n  slow: {count_per_array: [0, 1e10]}\n",
       "faults.slow.count_per_array: expected two integers in 0..1000000000"},
  };
  for (const auto& [text, message] : cases) {
    auto p = twin::parse_profile_yaml(text, "t.yaml");
    ASSERT_FALSE(p.has_value()) << text;
    EXPECT_EQ(p.error(), std::string("t.yaml: ") + message);
  }
}

TEST(DaemonConfig, DefaultsAndBoardUri) {
  auto c = server::parse_config("", "x");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->board_uri(), "sim:profile=typical,seed=1,noise_seed=1");
  auto s = server::parse_config("board: {backend: socket, address: 'tcp:127.0.0.1:7700'}", "x");
  ASSERT_TRUE(s.has_value()) << s.error();
  EXPECT_EQ(s->board_uri(), "tcp:127.0.0.1:7700");
  auto u = server::parse_config("board: {backend: usb, serial: XS01}", "x");
  EXPECT_EQ(u->board_uri(), "usb:serial=XS01");
}

TEST(DaemonConfig, ProgramVerifySectionAndTheShippedExample) {
  auto c = server::parse_config(
      "program_verify: {tol_uS: 2.5, max_rounds: 12, verify_n_avg: 16, max_wait_reads: 5}", "x");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_DOUBLE_EQ(c->program_verify.tol_uS, 2.5);
  EXPECT_EQ(c->program_verify.max_rounds, 12);
  EXPECT_EQ(c->program_verify.verify.n_avg, 16);
  EXPECT_EQ(c->program_verify.max_wait_reads, 5);
  EXPECT_EQ(server::parse_config("program_verify: {max_wait_reads: 0}", "c.yaml").error(),
            "c.yaml: program_verify.max_wait_reads = 0: allowed 1..100");
  EXPECT_EQ(server::parse_config("program_verify: {verify_n_avg: 65}", "c.yaml").error(),
            "c.yaml: program_verify.verify_n_avg = 65: allowed 1..64");
  EXPECT_EQ(server::parse_config("program_verify: {tol_uS: wide}", "c.yaml").error(),
            "c.yaml: program_verify.tol_uS: expected a number, got 'wide'");
  EXPECT_NE(server::parse_config("program_verify: {tolerance: 3}", "c.yaml")
                .error()
                .find("program_verify.tolerance: unknown key"),
            std::string::npos);
  // The example shipped in configs/ parses (with its state_dir and log level).
  auto shipped = server::load_config_file(XBAR_SOURCE_DIR "/configs/xbard.yaml");
  ASSERT_TRUE(shipped.has_value()) << shipped.error();
  EXPECT_EQ(shipped->state_dir, "/var/lib/xbar");
}

TEST(DaemonConfig, ErrorsNameTheKey) {
  EXPECT_EQ(server::parse_config("board: {backend: floppy}", "c.yaml").error(),
            "c.yaml: board.backend: 'floppy' is not one of sim, socket, usb");
  EXPECT_EQ(server::parse_config("board: {seed: -3}", "c.yaml").error(),
            "c.yaml: board.seed: expected an unsigned integer, got '-3'");
  EXPECT_NE(server::parse_config("lisen: x", "c.yaml").error().find("lisen: unknown key"),
            std::string::npos);
  EXPECT_NE(server::parse_config("board: {backend: socket, address: 'x'}", "c.yaml")
                .error()
                .find("board.address: 'x'"),
            std::string::npos);
  EXPECT_NE(server::parse_config("log_level: loud", "c.yaml").error().find("log_level: 'loud'"),
            std::string::npos);
  EXPECT_NE(
      server::parse_config("listen: [1, 2]", "c.yaml").error().find("listen: expected a string"),
      std::string::npos);
  // A stray CR (config_fuzz: it did not survive the config being written back) or a tab.
  EXPECT_EQ(server::parse_config("listen: \"127.0.0.1:50051\\r\"", "c.yaml").error(),
            "c.yaml: listen: control character 0x0d at byte 15: not allowed");
  EXPECT_NE(server::parse_config("state_dir: \"a\\tb\"", "c.yaml")
                .error()
                .find("state_dir: control character 0x09 at byte 1"),
            std::string::npos);
}

TEST(DaemonConfig, SecurityAndSchedulingSections) {
  auto c = server::parse_config(
      "metrics_listen: '127.0.0.1:9464'\n"
      "security: {token_file: /etc/xbar/token, tls_cert: a.pem, tls_key: a.key, "
      "tls_client_ca: ca.pem}\n"
      "scheduling: {busy_policy: refuse, max_queue: 64, stream_idle_timeout_s: 2.5}",
      "x");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(c->token_file, "/etc/xbar/token");
  EXPECT_EQ(c->tls_client_ca, "ca.pem");
  EXPECT_EQ(c->busy_policy, "refuse");
  EXPECT_EQ(c->max_queue, 64u);
  EXPECT_DOUBLE_EQ(c->stream_idle_timeout_s, 2.5);
  EXPECT_EQ(server::parse_config("scheduling: {busy_policy: maybe}", "c.yaml").error(),
            "c.yaml: scheduling.busy_policy (--busy-policy): 'maybe': allowed wait, refuse");
  EXPECT_EQ(server::parse_config("scheduling: {max_queue: 0}", "c.yaml").error(),
            "c.yaml: scheduling.max_queue = 0: allowed 1..1000000");
  EXPECT_EQ(server::parse_config("scheduling: {stream_idle_timeout_s: 0}", "c.yaml").error(),
            "c.yaml: scheduling.stream_idle_timeout_s = 0: allowed 0.1..86400");
  EXPECT_EQ(server::parse_config("security: {tls_cert: a.pem}", "c.yaml").error(),
            "c.yaml: security.tls_cert and security.tls_key (--tls-cert, --tls-key): give both or "
            "neither");
  EXPECT_EQ(server::parse_config("security: {tls_client_ca: ca.pem}", "c.yaml").error(),
            "c.yaml: security.tls_client_ca (--tls-client-ca): needs tls_cert and tls_key (mTLS is "
            "TLS first)");
  EXPECT_NE(server::parse_config("security: {token: abc}", "c.yaml")
                .error()
                .find("security.token: unknown key"),
            std::string::npos);
}

TEST(DaemonConfig, RetentionSection) {
  auto d = server::parse_config("", "x");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->keep_inactive, std::optional<uint64_t>(20));  // on by default
  auto c = server::parse_config("retention: {keep_inactive: 3}", "x");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->keep_inactive, std::optional<uint64_t>(3));
  auto zero = server::parse_config("retention: {keep_inactive: 0}", "x");
  ASSERT_TRUE(zero.has_value()) << zero.error();
  EXPECT_EQ(zero->keep_inactive, std::optional<uint64_t>(0));
  auto off = server::parse_config("retention: {keep_inactive: all}", "x");
  ASSERT_TRUE(off.has_value()) << off.error();
  EXPECT_EQ(off->keep_inactive, std::nullopt);
  auto comments_only = server::parse_config("retention:\n  # keep_inactive: 5\n", "x");
  ASSERT_TRUE(comments_only.has_value()) << comments_only.error();
  EXPECT_EQ(comments_only->keep_inactive, std::optional<uint64_t>(20));
  const std::string range =
      "allowed 0..1000000 (inactive deployments kept whole per chip), or all "
      "(retention off)";
  EXPECT_EQ(server::parse_config("retention: {keep_inactive: 1000001}", "c.yaml").error(),
            "c.yaml: retention.keep_inactive: '1000001': " + range);
  EXPECT_EQ(server::parse_config("retention: {keep_inactive: -1}", "c.yaml").error(),
            "c.yaml: retention.keep_inactive: '-1': " + range);
  EXPECT_EQ(server::parse_config("retention: {keep_inactive: [1]}", "c.yaml").error(),
            "c.yaml: retention.keep_inactive: expected a count or all, got a list");
  EXPECT_NE(server::parse_config("retention: {keep: 3}", "c.yaml")
                .error()
                .find("retention.keep: unknown key (allowed: keep_inactive)"),
            std::string::npos);
  EXPECT_EQ(server::parse_keep_inactive("none", "--keep-inactive").error(),
            "--keep-inactive: 'none': " + range);
  // The shipped example documents the default.
  auto shipped = server::load_config_file(XBAR_SOURCE_DIR "/configs/xbard.yaml");
  ASSERT_TRUE(shipped.has_value()) << shipped.error();
  EXPECT_EQ(shipped->keep_inactive, std::optional<uint64_t>(20));
}

}  // namespace
}  // namespace xbar
