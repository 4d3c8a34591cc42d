# The daemon's durable chip record (SQLite, WAL); included from server/CMakeLists.txt.
# SQLite is used through its C API directly; FindSQLite3 (CMake >= 3.14) gives SQLite::SQLite3.
find_package(SQLite3 REQUIRED)
target_sources(xbar_server_lib PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src/chip_record.cc)
target_link_libraries(xbar_server_lib PUBLIC SQLite::SQLite3 Eigen3::Eigen)
