// xbar.v1.BoardService: a thin translator (SoapyRemote's ClientHandler): validate the request,
// call the driver layer, map errors to grpc::Status.
#pragma once

#include <mutex>

#include "xbar/drivers/board.h"
#include "xbar/v1/board.grpc.pb.h"

namespace xbar::server {

/// Handlers run on gRPC's threads; Board serialises the exchanges with the hardware.
class BoardServiceImpl final : public xbar::v1::BoardService::Service {
 public:
  /// `board` and `board_mu` are borrowed and must outlive the service. Reads take `board_mu`
  /// so that they never land between the rounds of a program-verify or a scan.
  BoardServiceImpl(Board& board, std::mutex& board_mu) : board_(board), board_mu_(board_mu) {}

  grpc::Status GetBoardInfo(grpc::ServerContext* ctx, const v1::GetBoardInfoRequest* req,
                            v1::BoardInfo* out) override;
  grpc::Status GetBoardStatus(grpc::ServerContext* ctx, const v1::GetBoardStatusRequest* req,
                              v1::BoardStatus* out) override;
  grpc::Status ReadConductances(grpc::ServerContext* ctx, const v1::ReadConductancesRequest* req,
                                grpc::ServerWriter<v1::ConductanceChunk>* writer) override;

 private:
  Board& board_;
  std::mutex& board_mu_;
};

}  // namespace xbar::server
