-- local placeholder for another branch's migration (not committed)
SELECT 1;
