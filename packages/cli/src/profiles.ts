/** Profile options shared by the commands that replay. */
import { Profile, ProfileError, parseProfile } from '@nvx/emulator';
import { UsageError } from './output';

export const PROFILE_HELP = "a profile: 'reference', 'optimized', or area=path[,area=path...] (see nvx paths)";

export function profileArg(spec: string, flag: string): Profile {
  try {
    return parseProfile(spec);
  } catch (e) {
    if (e instanceof ProfileError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}
