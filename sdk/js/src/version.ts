/** This package's version (checked against package.json by test/package.test.mjs). */
export const VERSION = '0.1.0';
