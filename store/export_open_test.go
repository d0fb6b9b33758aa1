package store

// OpenCommandsSQL is OpenCommands' statement without Stuck, for its plan's
// test.
const OpenCommandsSQL = openCommands
