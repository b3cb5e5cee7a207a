import { describe, expect, it } from 'vitest';
import { openFilesLimit, parseOpenFilesLimit } from './open-files.js';

const limits = (files: string) => `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            ${files}                files     
Max locked memory         8388608              8388608              bytes     
`;

describe('open-files limit', () => {
  it('reads the soft and hard limits of "Max open files", unlimited as Infinity', () => {
    expect(parseOpenFilesLimit(limits('1024                 524288              '))).toEqual({ soft: 1024, hard: 524288 });
    expect(parseOpenFilesLimit(limits('unlimited            unlimited           '))).toEqual({ soft: Infinity, hard: Infinity });
    expect(parseOpenFilesLimit('Max cpu time unlimited unlimited seconds\n')).toBeNull();
    expect(parseOpenFilesLimit(limits('lots                 1024                '))).toBeNull();
  });

  it("reads this process's own limit on Linux, where Node.js has raised the soft one to the hard one", () => {
    const limit = openFilesLimit();
    if (process.platform !== 'linux') {
      expect(limit).toBeNull();
      return;
    }
    expect(limit).not.toBeNull();
    expect(limit!.soft).toBe(limit!.hard);
    expect(limit!.soft).toBeGreaterThanOrEqual(1024);
    expect(openFilesLimit('/nonexistent/limits')).toBeNull();
  });
});
