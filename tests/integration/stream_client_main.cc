// A client that opens a StreamInfer, sends one 20 ms chunk, prints "streaming" once the
// daemon has answered it, and then hangs without closing: the stand-in for a client that
// dies mid-stream (the test kills it with SIGKILL).
//   xbar-test-stream-client ADDRESS DEPLOYMENT_ID RATE_HZ
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>

#include "xbar/v1/models.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ADDRESS DEPLOYMENT_ID RATE_HZ\n", argv[0]);
    return 2;
  }
  const int rate = std::stoi(argv[3]);
  auto stub = xbar::v1::ModelService::NewStub(
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->StreamInfer(&ctx);
  xbar::v1::StreamInferRequest first;
  first.set_deployment(argv[2]);
  first.set_sample_rate_hz(static_cast<uint32_t>(rate));
  first.set_path(xbar::v1::INFER_HARDWARE);
  for (int i = 0; i < rate / 50; ++i) first.add_samples(0.3f * std::sin(0.01f * i));
  if (!stream->Write(first)) return 1;
  xbar::v1::StreamInferResponse r;
  if (!stream->Read(&r)) return 1;
  std::printf("streaming steps=%u\n", r.steps());
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
