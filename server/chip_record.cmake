# The daemon's durable chip record (SQLite, WAL); included from server/CMakeLists.txt.
# SQLite is used through its C API directly; FindSQLite3 (CMake >= 3.14) gives SQLite::SQLite3.
find_package(SQLite3 REQUIRED)
# ChipRecord (src/chip_record.h) is implemented across src/store/, one job per file.
target_sources(xbar_server_lib PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/sqlite.cc           # the SQLite toolkit
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/schema.cc           # schema and migrations
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/connection.cc       # open, close, integrity check
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/scope.cc            # every call's prologue
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/chip_health.cc      # chips, faults
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/endurance.cc        # pulse counters, programming records
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/deployment_rows.cc  # deployment rows: read, checks
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/deployments.cc      # deployments, array owners
  ${CMAKE_CURRENT_SOURCE_DIR}/src/store/retention.cc)       # archiving old deployments
target_link_libraries(xbar_server_lib PUBLIC SQLite::SQLite3 Eigen3::Eigen)
