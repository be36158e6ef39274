export function envNames(text: string): Set<string>;
export function composeProblems(composeText: string, envExampleText: string, gitignoreText: string): string[];
