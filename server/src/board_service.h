// xbar.v1.BoardService: a thin translator (SoapyRemote's ClientHandler): validate the request,
// call the driver layer, map errors to grpc::Status.
#pragma once

#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/v1/board.grpc.pb.h"

namespace xbar::server {

/// Handlers run on gRPC's threads; Board serialises the exchanges with the hardware.
class BoardServiceImpl final : public xbar::v1::BoardService::Service {
 public:
  /// `board` and `sched` are borrowed and must outlive the service. Reads take a board turn
  /// so that they never land between the rounds of a program-verify or a scan.
  BoardServiceImpl(Board& board, Scheduler& sched) : board_(board), sched_(sched) {}

  grpc::Status GetBoardInfo(grpc::ServerContext* ctx, const v1::GetBoardInfoRequest* req,
                            v1::BoardInfo* out) override;
  grpc::Status GetBoardStatus(grpc::ServerContext* ctx, const v1::GetBoardStatusRequest* req,
                              v1::BoardStatus* out) override;
  grpc::Status ReadConductances(grpc::ServerContext* ctx, const v1::ReadConductancesRequest* req,
                                grpc::ServerWriter<v1::ConductanceChunk>* writer) override;

 private:
  Board& board_;
  Scheduler& sched_;
};

}  // namespace xbar::server
