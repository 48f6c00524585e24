-- fail: encrypted_column, column: tax.tax_enc
SELECT industry, COUNT(tax_enc) AS n FROM tax GROUP BY industry
