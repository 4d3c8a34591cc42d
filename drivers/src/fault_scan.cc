// Fault scan: see fault_scan.h (being written).
