-- local placeholder (not committed): 0023 belongs to another branch
SELECT 1;
