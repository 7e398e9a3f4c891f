// Compile-fail case module_boundary:
// a source file of the transfer module includes an internal header of the notification module.
// Both files compile exactly as sources of the transfer module (its include path, its links);
// they differ only in the line marked "case line", where the control includes transfer's own
// internal header. A module's src/ is on no other target's include path, so the misuse stops
// at the #include.
#include <transfer/transfer.hpp>

#include "transfer_tables.hpp"  // case line

int main() {
    return 0;
}
