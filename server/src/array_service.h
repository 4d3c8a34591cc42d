// xbar.v1.ArrayService: program-verify and the fault map, with the chip record kept in step.
#pragma once

#include "call.h"
#include "chip_record.h"
#include "programming.h"
#include "scheduler.h"
#include "xbar/drivers/board.h"
#include "xbar/drivers/program_verify.h"
#include "xbar/v1/arrays.grpc.pb.h"

namespace xbar::server {

/// Handlers run on gRPC's threads. Programming and scans hold their array exclusive and take
/// one board turn for the whole operation (scheduler.h), so nothing interleaves with them.
class ArrayServiceImpl final : public xbar::v1::ArrayService::Service {
 public:
  /// `board`, `record`, `sched` and `access` are borrowed and must outlive the service;
  /// `observer` is told what each programming applied (may be empty).
  ArrayServiceImpl(Board& board, ChipRecord& record, Scheduler& sched, const ChangeAccess& access,
                   const ProgramVerifyConfig& defaults = {}, ProgrammingObserver observer = {})
      : board_(board),
        record_(record),
        sched_(sched),
        access_(access),
        defaults_(defaults),
        observer_(std::move(observer)) {}

  grpc::Status ProgramArray(grpc::ServerContext* ctx, const v1::ProgramArrayRequest* req,
                            grpc::ServerWriter<v1::ProgramArrayResponse>* writer) override;
  grpc::Status ScanFaults(grpc::ServerContext* ctx, const v1::ScanFaultsRequest* req,
                          grpc::ServerWriter<v1::ScanFaultsResponse>* writer) override;
  grpc::Status GetFaultMap(grpc::ServerContext* ctx, const v1::GetFaultMapRequest* req,
                           v1::FaultMap* out) override;

 private:
  // The operations' bodies (run_operation records their messages).
  grpc::Status program(grpc::ServerContext* ctx, const v1::ProgramArrayRequest* req,
                       grpc::ServerWriterInterface<v1::ProgramArrayResponse>* writer);
  grpc::Status scan(grpc::ServerContext* ctx, const v1::ScanFaultsRequest* req,
                    grpc::ServerWriterInterface<v1::ScanFaultsResponse>* writer);

  Board& board_;
  ChipRecord& record_;
  Scheduler& sched_;
  const ChangeAccess& access_;
  ProgramVerifyConfig defaults_;
  ProgrammingObserver observer_;
};

}  // namespace xbar::server
