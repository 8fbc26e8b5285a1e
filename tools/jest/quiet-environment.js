/**
 * The test environment of the project's jest: node's, with console.log,
 * console.info and console.debug from a test held back and printed only if
 * that test fails (a property's counterexample, a minimized trace). A
 * passing suite prints nothing but jest's own lines; NVX_TEST_LOG=1 prints
 * everything as it comes. console.warn and console.error always print.
 */
'use strict';
const { TestEnvironment } = require('jest-environment-node');

const HELD = ['log', 'info', 'debug'];

class QuietEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    this.held = [];
    this.wrapped = null;
  }

  /** Wrap the console jest installed for this file (it is set after the environment is built). */
  wrap() {
    const c = this.global.console;
    if (!c || this.wrapped === c || process.env.NVX_TEST_LOG) return;
    const original = {};
    for (const k of HELD) {
      original[k] = c[k].bind(c);
      c[k] = (...args) => {
        this.held.push([k, args]);
      };
    }
    this.original = original;
    this.wrapped = c;
  }

  async handleTestEvent(event) {
    if (event.name === 'test_start' || event.name === 'hook_start') this.wrap();
    if (event.name === 'test_start') this.held = [];
    if (event.name === 'test_done') {
      if (event.test.errors.length && this.original) for (const [k, args] of this.held) this.original[k](...args);
      this.held = [];
    }
  }
}

module.exports = QuietEnvironment;
