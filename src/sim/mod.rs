//! VBS simulator (see the vbs-sim binary).
