// Runs a callback once the current synchronous code has run, as a microtask.
//
// `queueMicrotask` would do, but Node.js wraps every call in an AsyncResource (an object, a
// bound function and async-hook bookkeeping); a producer schedules one or two of these per
// send, so a client running thousands of devices pays for it on every record. A callback
// that throws surfaces as an unhandled rejection, which ends the process as an uncaught
// exception from queueMicrotask would.

const resolved = Promise.resolve();

export function soon(callback: () => void): void {
  void resolved.then(callback);
}
