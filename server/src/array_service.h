// xbar.v1.ArrayService: program-verify and the fault map, with the chip record kept in step.
#pragma once

#include <mutex>

#include "chip_record.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/v1/arrays.grpc.pb.h"

namespace xbar::server {

/// Handlers run on gRPC's threads. Operations that pulse take `board_mu` so that two never
/// interleave on the board (the fair queue of issue 6 will replace this simple lock).
class ArrayServiceImpl final : public xbar::v1::ArrayService::Service {
 public:
  /// All three are borrowed and must outlive the service.
  ArrayServiceImpl(Board& board, ChipRecord& record, std::mutex& board_mu,
                   const ProgramVerifyConfig& defaults = {})
      : board_(board), record_(record), board_mu_(board_mu), defaults_(defaults) {}

  grpc::Status ProgramArray(grpc::ServerContext* ctx, const v1::ProgramArrayRequest* req,
                            grpc::ServerWriter<v1::ProgramArrayResponse>* writer) override;
  grpc::Status ScanFaults(grpc::ServerContext* ctx, const v1::ScanFaultsRequest* req,
                          grpc::ServerWriter<v1::ScanFaultsResponse>* writer) override;
  grpc::Status GetFaultMap(grpc::ServerContext* ctx, const v1::GetFaultMapRequest* req,
                           v1::FaultMap* out) override;

 private:
  Board& board_;
  ChipRecord& record_;
  std::mutex& board_mu_;
  ProgramVerifyConfig defaults_;
};

}  // namespace xbar::server
